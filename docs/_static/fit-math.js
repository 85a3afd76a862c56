// Display formulas wider than their column are scaled down to fit instead of scrolling (a
// scrolled-off formula looks complete but is not). Runs once MathJax has typeset the page,
// and again when the window is resized. The scale is kept in data-optx-scale (the browser
// check, docs/check_browser.py, reads it).
(function () {
  function fit() {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (c) {
      if (c.dataset.optxFont === undefined) c.dataset.optxFont = c.style.fontSize || "";
      c.style.fontSize = c.dataset.optxFont;
      var math = c.firstElementChild;
      if (!math) return;
      var room = c.parentElement.getBoundingClientRect().width;
      var need = math.getBoundingClientRect().width;
      var scale = need > room && need > 0 ? room / need : 1;
      c.dataset.optxScale = scale.toFixed(3);
      if (scale < 1) {
        var base = parseFloat(c.dataset.optxFont) || 100;
        c.style.fontSize = (base * scale * 0.995).toFixed(2) + "%";
      }
    });
    document.documentElement.dataset.optxMathFitted = "true";
  }
  function whenTypeset() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(fit);
    }
  }
  if (document.readyState === "complete") whenTypeset();
  else window.addEventListener("load", whenTypeset);
  var pending;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(fit, 100);
  });
})();
