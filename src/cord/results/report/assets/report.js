// Filters and search over the problems; the page is complete without this script.
(function () {
  const problems = Array.from(document.querySelectorAll("article.problem"));
  const grade = document.getElementById("filter-grade");
  const method = document.getElementById("filter-method");
  const teacher = document.getElementById("filter-teacher");
  const query = document.getElementById("filter-search");
  const shown = document.getElementById("shown-count");
  function apply() {
    const q = query.value.trim().toLowerCase();
    let count = 0;
    for (const p of problems) {
      const ok =
        (grade.value === "all" || p.dataset.grade === grade.value) &&
        (method.value === "all" || p.dataset.method === method.value) &&
        (teacher.value === "all" || p.dataset.teachers.split("\u001f").includes(teacher.value)) &&
        (!q || p.dataset.id.toLowerCase().includes(q) || p.querySelector(".question").textContent.toLowerCase().includes(q));
      p.classList.toggle("hidden", !ok);
      if (ok) count += 1;
    }
    shown.textContent = String(count);
  }
  for (const el of [grade, method, teacher]) el.addEventListener("change", apply);
  query.addEventListener("input", apply);
  apply();
})();
