"""Minimal reproductions of nanobook 0.19.2 misbehaving on the exchange-core mix.

All need only: two resting bids at one price, a sell that fills the first one fully, then
the second is cancelled (or modified, which nanobook does as cancel and new order). The
cancelled order's quantity stays in the level (`quantity` and `order_count` still count it),
and then:
1. `cancel` (or `modify` to another price): the next sell that crosses that level never
   returns (the process spins at 100% CPU inside the extension).
2. `modify` at the same price: the next sell gets a trade of quantity 0 against the
   cancelled order, and the level shows the quantity twice.
The trigger is an order ahead at the same level having been filled and removed: with the
first bid only partly filled, or absent, all three behave.

Each case runs in a child process with a time limit, so this script always ends:

    python bench/peers/repro_nanobook.py
"""

import subprocess
import sys

SETUP = """
import nanobook
ex = nanobook.Exchange()
first = ex.submit_limit("buy", 100, 4)
second = ex.submit_limit("buy", 100, 10)
ex.submit_limit("sell", 90, 4, "ioc")        # fills `first` fully; `second` untouched
"""

CASES = {
    "cancel, then a crossing sell": SETUP
    + """
ex.cancel(second.order_id)
print("book after cancel:", [(l.price, l.quantity, l.order_count) for l in ex.full_book().bids], flush=True)
print("sending sell 2 @ 90 ioc ...", flush=True)
result = ex.submit_limit("sell", 90, 2, "ioc")
print("returned:", [(t.passive_order_id, t.quantity) for t in result.trades])
""",
    "modify to another price, then a crossing sell": SETUP
    + """
ex.modify(second.order_id, 99, 10)
print("book after modify:", [(l.price, l.quantity, l.order_count) for l in ex.full_book().bids], flush=True)
print("sending sell 2 @ 90 ioc ...", flush=True)
result = ex.submit_limit("sell", 90, 2, "ioc")
print("returned:", [(t.passive_order_id, t.quantity) for t in result.trades])
""",
    "modify at the same price, then a crossing sell": SETUP
    + """
new = ex.modify(second.order_id, 100, 10).new_order_id
levels = [(l.price, l.quantity, l.order_count) for l in ex.full_book().bids]
print("book after modify:", levels, "(expect [(100, 10, 1)])", flush=True)
result = ex.submit_limit("sell", 90, 2, "ioc")
print("trades (passive id, qty):", [(t.passive_order_id, t.quantity) for t in result.trades], f"(expect [({new}, 2)])")
""",
}

TIMEOUT_S = 10


def main() -> int:
    for name, code in CASES.items():
        print(f"== {name}")
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S)
            print(proc.stdout + proc.stderr, end="")
        except subprocess.TimeoutExpired as expired:
            out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
            print(out, end="")
            print(f"HANGS: no return after {TIMEOUT_S} s (child killed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
