"""Attacks on a live server, as a hostile visitor makes them (issue 18): the README's reliability figures."""
