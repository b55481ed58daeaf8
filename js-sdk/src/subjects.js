// NATS subject patterns: `*` matches one token, `>` the rest.

/** Whether `subject` is matched by `pattern`. */
export function matches(pattern, subject) {
  const want = pattern.split(".");
  const have = subject.split(".");
  for (let i = 0; i < want.length; i++) {
    const token = want[i];
    if (token === ">") return have.length > i;
    if (i >= have.length) return false;
    if (token !== "*" && token !== have[i]) return false;
  }
  return want.length === have.length;
}
