(function () {
  "use strict";
  var every = Number(document.body.dataset.refresh || 30000);
  function refresh() {
    fetch("dashboard/data" + window.location.search, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) {
        Object.keys(data.sections).forEach(function (name) {
          var body = document.querySelector("#" + name + " > .body");
          if (body) { body.innerHTML = data.sections[name]; }
        });
        document.getElementById("generated").textContent = data.generated;
        document.getElementById("live").textContent = "live, every " + every / 1000 + " s";
      })
      .catch(function (e) { document.getElementById("live").textContent = "not refreshed: " + e.message; })
      .finally(function () { window.setTimeout(refresh, every); });
  }
  window.setTimeout(refresh, every);
})();
