"""python -m klein_engine serve | generate | build-tiny"""

import os
import sys


def main() -> int:
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "serve" and os.environ.get("KLEIN_ENGINE_FAULTS") == "1":
        # The TypeScript tests start the engine this way to inject faults (testing/faults.py);
        # the serving code itself knows nothing of them.
        from .testing.faults import main as run
    elif cmd == "serve":
        from .server import main as run
    elif cmd == "generate":
        from .cli import main as run
    elif cmd == "build-tiny":
        from .tiny import main as run
    else:
        print("usage: python -m klein_engine serve|generate|build-tiny [options]", file=sys.stderr)
        return 64
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
