"""Write trial/dicom/table_e1_1.py, PS3.15 Table E.1-1 as data, from a package on PyPI that ships the table.

Run by hand when a new edition of the standard is out (nothing imports this module):

    pip download --no-deps dicom-anonymizer==2.1.0 -d /tmp/e11
    python -m trial.dicom._generate_table_e1_1 /tmp/e11/dicom_anonymizer-2.1.0-py3-none-any.whl dicomfields_2026c

The source is KitwareMedical's dicom-anonymizer (BSD-3-Clause), whose dicom_anonymization_databases/
dicomfields_<edition>.py lists every attribute of the table by its Basic Profile action (D_TAGS, Z_TAGS, X_TAGS,
U_TAGS and the choices Z_D_TAGS, X_Z_TAGS, X_D_TAGS, X_Z_D_TAGS, X_Z_U_STAR_TAGS), each with the attribute's name
in a comment.  The file is read as text (never imported or executed); only the tags, names and actions are taken.
"""
from __future__ import annotations

import ast
import hashlib
import sys
import zipfile
from pathlib import Path

_ACTIONS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}
_LICENCE = """Copyright 2020, Kitware Europe

Redistribution and use in source and binary forms, with or without modification, are permitted provided that the
following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of conditions and the following
disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice, this list of conditions and the
following disclaimer in the documentation and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its contributors may be used to endorse or promote
products derived from this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES,
INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL,
SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY,
WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE."""


def rows_from(source: str) -> list[tuple[str, str, str]]:
    """(tag pattern "(gggg,eeee)" with x for a digit a mask leaves free, name, Basic Profile action), sorted by tag.

    Each tag is a tuple literal, (group, element) or (group, element, group mask, element mask) for a repeating
    group, and its name is the comment at the end of the line where the tuple closes."""
    lines = source.splitlines()
    rows: dict[str, tuple[str, str, str]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in _ACTIONS):
            continue
        action = _ACTIONS[node.targets[0].id]
        for element in node.value.elts:
            values = ast.literal_eval(element)
            group, number, group_mask, element_mask = (*values, 0xFFFF, 0xFFFF)[:4]
            _, _, comment = lines[element.end_lineno - 1].partition("#")
            if not comment.strip():
                raise SystemExit(f"no name for {values} on line {element.end_lineno}")
            pattern = _pattern(group, number, group_mask, element_mask)
            if pattern in rows and rows[pattern][2] != action:
                raise SystemExit(f"{pattern} has two actions: {rows[pattern][2]} and {action}")
            rows[pattern] = (pattern, comment.strip(), action)
    if set(_ACTIONS) - {n.targets[0].id for n in ast.parse(source).body
                        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}:
        raise SystemExit("a list of the table is missing from the source")
    return sorted(rows.values())


def _pattern(group: int, element: int, group_mask: int, element_mask: int) -> str:
    def digits(value: int, mask: int) -> str:
        return "".join(f"{value:04X}"[i] if (mask >> (12 - 4 * i)) & 0xF else "x" for i in range(4))

    return f"({digits(group, group_mask)},{digits(element, element_mask)})"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(wheel: str, edition_module: str) -> None:
    member = f"dicomanonymizer/dicom_anonymization_databases/{edition_module}.py"
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(member)
        distribution = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    source = raw.decode("utf-8")
    rows = rows_from(source)
    # The table's own last row, which the source handles in code rather than in its lists.
    rows.append(("(gggg,eeee)", "Private Attributes (gggg odd)", "X"))
    edition = edition_module.removeprefix("dicomfields_")
    lines = [
        '"""PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes), Basic Profile column, as data.',
        "",
        f"GENERATED by trial/dicom/_generate_table_e1_1.py from edition {edition} of the table, as shipped by",
        f"{distribution.removesuffix('.dist-info')} (PyPI), {member},",
        f"sha256 {hashlib.sha256(raw).hexdigest()}. Do not edit: generate again.",
        "",
        "The table is NEMA's (the DICOM standard is free to use and copy). The list it was taken from is",
        "KitwareMedical's dicom-anonymizer, distributed under this licence:",
        "",
        *_LICENCE.splitlines(),
        '"""',
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        f'EDITION: Final = "{edition}"',
        "",
        "# (tag, with x for each hexadecimal digit a repeating group leaves free; the attribute's name in the table;",
        "#  the Basic Profile action: D dummy, Z zero length, X remove, U new UID, or a choice such as X/Z)",
        "TABLE_E1_1: Final[tuple[tuple[str, str, str], ...]] = (",
        *(f"    ({_quoted(tag)}, {_quoted(name)}, {_quoted(action)})," for tag, name, action in rows),
        ")",
        "",
    ]
    target = Path(__file__).with_name("table_e1_1.py")
    target.write_text("\n".join(lines))
    print(f"{target}: {len(rows)} rows of edition {edition}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
