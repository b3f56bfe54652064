// Fills in the footer with the X-Served-By header of a fresh request, so a
// reload shows the edge spreading requests over workers and replicas.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const target = document.getElementById("served-by");
  if (!target) return;
  fetch("/healthz", { cache: "no-store" })
    .then((response) => {
      target.textContent = response.headers.get("X-Served-By") || "(no X-Served-By header)";
    })
    .catch((error) => {
      target.textContent = `(health check failed: ${error})`;
    });
});
