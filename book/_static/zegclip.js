// Marks every table cell that holds a value with its spread ("71.3 ± 0.8") so that zegclip.css keeps it on one
// line. Loaded from the book's own _static/ folder (registered in _config.yml: sphinx.config.html_js_files).
document.addEventListener("DOMContentLoaded", () => {
  for (const cell of document.querySelectorAll("table td, table th")) {
    if (cell.textContent.includes("\u00b1")) {
      cell.classList.add("zc-pm");
    }
  }
});
