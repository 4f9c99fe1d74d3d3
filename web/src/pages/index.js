// The landing page: says whether the server is ready and links to the clients.
import { api } from "../common/api.js";

(async () => {
  const status = document.getElementById("status");
  try {
    const body = await api("/readyz");
    status.textContent = `Server ready (store: ${body.store}).`;
  } catch (err) {
    status.textContent = err.code === "network" ? "Server unreachable." : "Server not ready.";
  }
})();
