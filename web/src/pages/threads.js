// Message visits page (/threads, /threads/{thread_id}): see docs/web.md "Message visits page".
import { signIn } from "../common/session.js";
import { ThreadsApp } from "../threads/app.js";

(async () => {
  const banner = document.getElementById("banner");
  const session = await signIn("careline.threads", banner);
  if (!session) return;
  const app = new ThreadsApp(session.token, session.me, banner);
  await app.start();
})();
