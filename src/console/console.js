// stagecast console: the only script. Shows the "when to use" hint of the event chosen in a
// stage form as the choice changes (without it, the hint updates when the form is checked).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("select[data-hint-for]").forEach(function (select) {
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      var hint = document.getElementById(select.getAttribute("data-hint-for"));
      if (hint) {
        hint.textContent = option ? option.getAttribute("data-hint") || "" : "";
      }
    });
  });
});
