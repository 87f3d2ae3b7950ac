"""A bash pipeline whose steps pass files: generate, transform, combine.

Shows ``File`` inputs and outputs: ``generate`` writes a file (a bash app with
``outputs=``); ``square`` reads it (its ``inputs`` are ``generate``'s output
``DataFuture``s, so it starts only when the file exists) and writes another;
a python app adds up the last files. Nothing waits on anything in the script
until the final ``result()``: the dependencies are the files.

Run it with threads (``python bash_pipeline.py``) or on worker processes
(``python bash_pipeline.py ../configs/local.toml``). The files go to
``pipeline/`` in the run directory (``runinfo/NNN/``).
"""
import os
import sys

import parsl_lite as parsl
from parsl_lite import File, bash_app, python_app


@bash_app
def generate(n, outputs=()):
    return f"seq 1 {n} > {outputs[0]}"


@bash_app
def square(inputs=(), outputs=()):
    return f"awk '{{ print $1 * $1 }}' {inputs[0]} > {outputs[0]}"


@python_app
def total(inputs=()):
    return sum(int(line) for f in inputs for line in open(f.filepath))


if __name__ == "__main__":
    config = sys.argv[1] if len(sys.argv) > 1 else None
    sizes = [10, 20, 30]
    with parsl.load(config):
        work = os.path.abspath(os.path.join(parsl.dfk().run_dir, "pipeline"))
        os.makedirs(work)
        squared = []
        for n in sizes:
            numbers = generate(n, outputs=[File(os.path.join(work, f"numbers_{n}.txt"))])
            squares = square(inputs=numbers.outputs, outputs=[File(os.path.join(work, f"squares_{n}.txt"))])
            squared.append(squares.outputs[0])              # a DataFuture of the squared file
        result = total(inputs=squared).result()
    expected = sum(k * k for n in sizes for k in range(1, n + 1))
    print(f"sum of squares over {len(sizes)} files: {result} (expected {expected})")
