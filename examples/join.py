"""A join app: fan out to as many tasks as a result says, and join their results.

The width of the fan-out (``count``) is known only when an earlier app has run.
``squares`` is a join app: its body runs once ``count`` is known, launches one
``square`` per item and returns their futures; its own future resolves to their
results (a list of futures gives a list of results). ``sum_of_squares`` returns
a single future, so its future resolves to that one value.

Run it with threads (``python join.py``) or on worker processes
(``python join.py ../configs/local.toml``).
"""
import sys

import parsl_lite as parsl
from parsl_lite import join_app, python_app


@python_app
def count():
    return 5


@python_app
def square(x):
    return x * x


@python_app
def add(*xs):
    return sum(xs)


@join_app
def squares(n):
    return [square(i) for i in range(n)]      # futures: the join app's future waits for them


@join_app
def sum_of_squares(n):
    return add(*[square(i) for i in range(n)])   # one future: its value is the join app's result


if __name__ == "__main__":
    config = sys.argv[1] if len(sys.argv) > 1 else None
    with parsl.load(config):
        n = count()
        values = squares(n).result()
        total = sum_of_squares(n).result()
    print(f"squares {values}")
    print(f"sum of squares of 0..{len(values) - 1}: {total}")
