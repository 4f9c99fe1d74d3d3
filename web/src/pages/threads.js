// Page entry (placeholder until the page is built): signs in, see docs/web.md.
import { signIn } from "../common/session.js";

signIn("careline.threads", document.getElementById("banner"));
