"""Every name biofm imports from a third-party package exists in the installed versions.

Most of biofm's imports are lazy (inside functions), so importing biofm proves little: this walks the
installed package's source, and for each `from PKG... import NAME` / `import PKG...` of a third-party
package imports the module and looks the name up. Run by scripts/smoke_wheel.sh in the fresh venv,
where the versions are the newest or the lowest the ranges allow. Packages that are not installed
(extras, opt-in tools) are listed and skipped. Exit status 1 on any missing name.
    python scripts/check_imports.py
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path


def imports(root: Path) -> set[tuple[str, str | None]]:
    """(module, name) for `from module import name`, (module, None) for `import module`; absolute only."""
    found: set[tuple[str, str | None]] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update((node.module, a.name) for a in node.names)
            elif isinstance(node, ast.Import):
                found.update((a.name, None) for a in node.names)
    return found


def main() -> int:
    spec = importlib.util.find_spec("biofm")
    if spec is None or spec.origin is None:
        print("biofm is not installed", file=sys.stderr)
        return 1
    root = Path(spec.origin).parent
    stdlib = set(sys.stdlib_module_names) | {"__future__", "biofm"}
    missing, absent = [], set()
    for module, name in sorted(imports(root), key=lambda x: (x[0], x[1] or "")):
        top = module.split(".")[0]
        if top in stdlib:
            continue
        if importlib.util.find_spec(top) is None:
            absent.add(top)
            continue
        try:
            mod = importlib.import_module(module)
            if name is not None and not hasattr(mod, name):
                importlib.import_module(f"{module}.{name}")  # a submodule not yet imported
        except ImportError as exc:
            needed = (getattr(exc, "name", None) or "").split(".")[0]
            if needed and needed != top and importlib.util.find_spec(needed) is None:
                absent.add(needed)  # e.g. torch.utils.tensorboard without the tensorboard extra
                continue
            missing.append(f"{module}{f' : {name}' if name else ''} ({exc})")
    print(f"  {len(imports(root))} imports checked; not installed (optional): {', '.join(sorted(absent)) or '-'}")
    for m in missing:
        print(f"  MISSING {m}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
