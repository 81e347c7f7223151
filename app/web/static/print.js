// The print button of the ticket and order pages (no inline script: CSP).
const button = document.getElementById("print");
if (button) button.addEventListener("click", () => window.print());
