"""NATS subject matching (`evhost_sdk.subjects`)."""

import unittest

from evhost_sdk.subjects import matches


class SubjectsTest(unittest.TestCase):
    def test_wildcards(self) -> None:
        self.assertTrue(matches("a.b", "a.b"))
        self.assertFalse(matches("a.b", "a.b.c"))
        self.assertTrue(matches("a.*", "a.b"))
        self.assertFalse(matches("a.*", "a.b.c"))
        self.assertTrue(matches("a.>", "a.b.c"))
        self.assertFalse(matches("a.>", "a"))
        self.assertFalse(matches("a.b.c", "a.b"))


if __name__ == "__main__":
    unittest.main()
