// echo-js, version 1 (see ../echo.js).
import { register } from "../echo.js";

export { subscriptions, handle } from "../../../../js-sdk/src/index.js";

register("1");
