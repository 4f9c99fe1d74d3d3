// fetch() against the Careline HTTP API: bearer token, JSON in and out, errors as CarelineError.
import { CarelineError } from "./errors.js";

/**
 * Call the API. `json` is sent as a JSON body, `body` as-is (e.g. image bytes).
 * Throws CarelineError: the server's code, or "network" when the server could not be reached.
 */
export async function api(path, { token, method = "GET", json, body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new CarelineError("network", "the server could not be reached");
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("application/json") ? await response.json() : await response.blob();
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new CarelineError(error.code || `http_${response.status}`, error.message, response.status);
  }
  return data;
}
