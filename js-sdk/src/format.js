// Formatting a log line from `log.info("charged %s for %d cents", id, n)`:
// the directives of Node's `util.format` (`%s`, `%d`, `%i`, `%f`, `%j`, `%o`,
// `%O`, `%%`); arguments left over are appended, separated by spaces.

/** One argument as text: strings as they are, errors as `Name: message`,
 * other values as JSON where they have one. */
export function show(value) {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === "bigint") return `${value}n`;
  if (value === undefined || typeof value === "function" || typeof value === "symbol") {
    return String(value);
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** `args` as one line of text, like `util.format`. */
export function format(...args) {
  if (args.length === 0) return "";
  const [first, ...rest] = args;
  if (typeof first !== "string") return args.map(show).join(" ");
  if (rest.length === 0) return first;
  let i = 0;
  const text = first.replace(/%[sdifjoO%]/g, (d) => {
    if (d === "%%") return "%";
    if (i >= rest.length) return d;
    const arg = rest[i++];
    switch (d) {
      case "%s":
        return typeof arg === "string" ? arg : show(arg);
      case "%d":
        return typeof arg === "bigint" ? `${arg}n` : String(Number(arg));
      case "%i":
        return typeof arg === "bigint" ? `${arg}n` : String(parseInt(arg, 10));
      case "%f":
        return String(parseFloat(arg));
      default:
        return show(arg);
    }
  });
  return [text, ...rest.slice(i).map(show)].join(" ");
}
