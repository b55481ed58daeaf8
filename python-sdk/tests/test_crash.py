"""What a crash writes (`evhost_sdk.crash`): the shape evhost quotes."""

import unittest

from evhost_sdk.crash import describe, report


class Boom(Exception):
    pass


class CrashTest(unittest.TestCase):
    def test_the_report_ends_with_a_panic_line_and_the_exception(self) -> None:
        try:
            raise ValueError("bad\nvalue")
        except ValueError as exc:
            text = report(exc)
        lines = text.splitlines()
        self.assertTrue(lines[0].startswith("Traceback"))
        self.assertRegex(lines[-2], r"^thread '<unnamed>' panicked at .*test_crash\.py:\d+:$")
        self.assertEqual(lines[-1], "ValueError: bad value")

    def test_types_outside_the_builtins_carry_their_module(self) -> None:
        self.assertEqual(describe(Boom("x")), f"{__name__}.Boom: x")
        self.assertEqual(describe(KeyError()), "KeyError")


if __name__ == "__main__":
    unittest.main()
