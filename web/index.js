"use strict";
// Shows whether the server is ready; the clients themselves arrive with the web step.
(async () => {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    status.textContent = response.ok ? `Server ready (store: ${body.store}).` : "Server not ready.";
  } catch (err) {
    status.textContent = "Server unreachable.";
  }
})();
