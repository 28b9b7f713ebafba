"""Link the held-out training faces (the 5 % no training run uses) into a folder, for `anoncli evaluate`.

    python scripts/held_out_faces.py ../shared/data/utkface runs/utkface-held-out --count 300

Links, not copies: the data's licence does not allow redistributing it, and nothing here is committed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anoncli.training.dataset import held_out_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=300, help="at most this many, the first by file name")
    arguments = parser.parse_args()
    files = held_out_files(arguments.data)
    arguments.folder.mkdir(parents=True, exist_ok=True)
    for path in files[: arguments.count]:
        link = arguments.folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    print(f"{min(len(files), arguments.count)} of {len(files)} held-out faces linked in {arguments.folder}")


if __name__ == "__main__":
    main()
