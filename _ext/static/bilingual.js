// The language switch ("English | 中文") and, on translated pages, the "原文 EN"
// toggle that hides or shows the English originals; the choice is remembered.
(function () {
  const KEY = "book-show-english";
  const root = document.documentElement;
  if (localStorage.getItem(KEY) === "false") root.classList.add("hide-english");

  function install() {
    const template = document.getElementById("book-language-switch");
    const header = document.querySelector(".article-header-buttons");
    if (!template || !header || header.querySelector(".language-switch")) return;
    const languageMeta = document.querySelector('meta[name="book:language"]');
    const language = languageMeta ? languageMeta.content : "en";
    const box = document.createElement("span");
    box.className = "language-switch";
    box.innerHTML = template.innerHTML;
    if (language !== "en") {
      const toggle = document.createElement("button");
      toggle.type = "button";
      toggle.className = "english-toggle";
      toggle.textContent = "原文 EN";
      toggle.title = "Show or hide the English original";
      const sync = () => toggle.setAttribute("aria-pressed", String(!root.classList.contains("hide-english")));
      toggle.addEventListener("click", () => {
        root.classList.toggle("hide-english");
        localStorage.setItem(KEY, String(!root.classList.contains("hide-english")));
        sync();
      });
      sync();
      box.appendChild(toggle);
    }
    header.prepend(box);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", install);
  else install();
})();
