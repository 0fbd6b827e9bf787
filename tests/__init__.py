"""pgsteady's tests; a package only so that ``tests.support`` imports by its full name."""
