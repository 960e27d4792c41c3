"""Mark each finding present, absent or uncertain in a report's free text: rules, no model; no Django.

The same labeler reads AI drafts and radiologists' reports, so the finding-level comparison of the
two (ai/metrics.py) is as fair as the rules are.  It works like NegEx (Chapman et al., 2001) and
the CheXpert labeler, written here from their published ideas, not their code:

1. The text is cut into sentences (. ! ? ; or a line break).
2. Mentions of each finding are found by its synonyms; a finding the tables below do not know (a
   trial can edit its findings) is found by its own name, singular or plural.
3. Cues are found in the same sentence: negation ("no", "without", "has resolved", …) and
   uncertainty ("possible", "cannot exclude", "may represent", …).  A cue before a mention reaches
   it across at most six words, or across a list of findings ("no effusion, pneumothorax or
   consolidation"); a cue after a mention ("effusion has resolved") reaches back four words and no
   comma.  Neither crosses a terminator ("but", "however", "except", "which", "there is", …) or a
   new positive item after a comma ("no pneumothorax, small left effusion").  Phrases that only
   look like negation ("no change in", "not significantly changed") are no cues.  When several cues
   reach a mention, the nearest one decides.
4. Some phrases are a finding's absence without any cue: "the heart size is normal" (cardiomegaly),
   "the lungs are clear" (consolidation, atelectasis, lung opacity).  Heart size is read as a
   subject with a size word: "the heart is enlarged", "the cardiac silhouette is normal in size",
   "heart size is borderline" (uncertain).
5. Across a report, the strongest statement wins: present over uncertain over absent, as in the
   CheXpert labeler ("the left effusion has resolved; small right effusion" is present).

A finding the report never mentions is "absent" in label_report (a report is a complete
statement of what is abnormal); label_report_detailed says whether it was mentioned.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "KNOWN_FINDINGS",
    "FindingLabel",
    "Status",
    "label_report",
    "label_report_detailed",
]

Status = Literal["present", "absent", "uncertain"]


@dataclass(frozen=True)
class FindingLabel:
    status: Status
    mentioned: bool
    sentence: str  # the report's sentence that decided the status; "" when not mentioned
    cue: str  # the negation or uncertainty cue (or the phrase) that applied; "" when none


def label_report(text: str, findings: Sequence[str]) -> dict[str, Status]:
    """Each finding → "present", "absent" or "uncertain"; not mentioned counts as "absent"."""
    return {name: label.status for name, label in label_report_detailed(text, findings).items()}


def label_report_detailed(text: str, findings: Sequence[str]) -> dict[str, FindingLabel]:
    """Each finding → its status, whether the report mentions it, and the sentence that decided."""
    if isinstance(findings, str):
        raise TypeError("findings must be a sequence of names, not one string")
    matchers = {name: _matcher(name) for name in findings}
    best: dict[str, tuple[int, FindingLabel]] = {}
    for sentence in _sentences(text or ""):
        for name, (status, cue) in _label_sentence(sentence, matchers).items():
            rank = _RANK[status]
            if name not in best or rank > best[name][0]:
                best[name] = (rank, FindingLabel(status=status, mentioned=True, sentence=sentence, cue=cue))
    not_mentioned = FindingLabel(status="absent", mentioned=False, sentence="", cue="")
    return {name: best[name][1] if name in best else not_mentioned for name in findings}


_RANK: Final = MappingProxyType({"absent": 0, "uncertain": 1, "present": 2})


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

_SIDE = r"(?:(?:left|right|bilateral|both)\s+)?"

# Synonyms by finding (regular expressions over lower-case text, matched at word boundaries).
_SYNONYMS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "pleural effusion": (
        r"(?<!pericardial )(?<!joint )effusions?",
        r"pleural fluid",
        r"fluid in the pleural spaces?",
        r"hydrothora(?:x|ces)",
        r"hydropneumothora(?:x|ces)",
        rf"blunt(?:ing|ed)? of (?:the )?{_SIDE}costophrenic (?:angles?|sulc(?:us|i))",
        rf"blunted {_SIDE}costophrenic (?:angles?|sulc(?:us|i))",
        r"costophrenic (?:angles?|sulc(?:us|i)) (?:is |are )?blunted",
    ),
    "pneumothorax": (
        r"pneumothora(?:x|xes|ces)",
        r"hydropneumothora(?:x|ces)",
        r"ptx",
    ),
    "consolidation": (
        r"consolidat(?:ion|ions|ed|ive)",
        r"air[- ]?space disease",
    ),
    "atelectasis": (
        r"atelecta(?:sis|ses|tic)",
        r"(?<!vertebral )(?<!compression )collapsed?",
        r"volume loss",
        r"loss of volume",
    ),
    "cardiomegaly": (
        r"cardiomegaly",
        r"cardiac enlargement",
        r"enlargement of the (?:heart|cardiac silhouette|cardiac shadow)",
        # "heart is enlarged", "normal heart size" and the like are read by _HEART_SUBJECT below
    ),
    "lung opacity": (
        r"opacit(?:y|ies)",
        r"opacification",
        r"opacified",
        r"infiltrat(?:e|es|ion|ions)",
        r"haziness",
        r"hazy",
        r"ground[- ]glass",
        r"shadowing",
    ),
})

# Other names for the same six findings, so a trial may call them what its protocol does.
_ALIASES: Final[Mapping[str, str]] = MappingProxyType({
    "effusion": "pleural effusion",
    "pleural effusions": "pleural effusion",
    "opacity": "lung opacity",
    "lung opacities": "lung opacity",
    "airspace opacity": "lung opacity",
    "enlarged heart": "cardiomegaly",
})

KNOWN_FINDINGS: Final = tuple(_SYNONYMS)

# Phrases that state a finding's absence on their own, without a negation cue.
_LUNGS_CLEAR = (
    r"(?:the )?lungs?(?: fields?| parenchyma)?(?: (?:are|is|appear|appears|remain|remains|otherwise|now|both|"
    r"well|expanded|hyperinflated|inflated|and|but|essentially|grossly|bilaterally))* clear"
    r"|clear lungs?"
)
_ABSENT_PHRASES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "consolidation": (_LUNGS_CLEAR,),
    "atelectasis": (_LUNGS_CLEAR,),
    "lung opacity": (_LUNGS_CLEAR,),
})

# Heart size: a subject, a few filler words, an optional "not", a degree, a size word.
_HEART = (
    r"(?:heart(?: size)?|cardiac (?:silhouette|size|shadow|contours?)|cardiomediastinal (?:silhouette|contours?)"
    r"|cardiothoracic ratio)"
)
_FILLER = r"(?: (?:is|are|was|appears?|remains?|seems?|looks?|again|now|still|currently|overall|also|otherwise))*"
_DEGREE = r"(?:(?:mildly|moderately|markedly|severely|slightly|significantly|minimally|massively|grossly) )?"
_SIZE_PRESENT = r"enlarged|enlargement|increased|large|prominent|big"
_SIZE_ABSENT = (
    r"normal in size|of normal size|normal(?:-| )sized?|normal|within normal limits|unremarkable|"
    r"(?:at )?(?:the )?upper limits? of normal|top(?:-| )normal|upper(?:-| )normal|small"
)
_SIZE_UNCERTAIN = r"borderline(?: enlarged| in size| size)?"
_HEART_SUBJECT: Final = re.compile(
    rf"\b{_HEART}{_FILLER} (?P<neg>not |no longer )?{_DEGREE}"
    rf"(?P<size>{_SIZE_UNCERTAIN}|{_SIZE_ABSENT}|{_SIZE_PRESENT})\b"
    rf"|\b(?P<size2>{_SIZE_UNCERTAIN}|normal(?:-| )sized?|normal|{_DEGREE}(?:{_SIZE_PRESENT})) {_HEART}\b"
)


def _heart_status(match: re.Match[str]) -> Status:
    size = match.group("size") or match.group("size2")
    if re.match(_SIZE_UNCERTAIN, size):
        return "uncertain"
    if re.fullmatch(rf"{_DEGREE}(?:{_SIZE_PRESENT})", size):
        return "absent" if match.group("neg") else "present"
    return "absent"


# Cues: (pattern, kind, direction).  Longer cues are tried first, so "cannot be excluded" is one
# uncertainty cue, not a negation "not" followed by something.
_PRE, _POST, _BOTH = "pre", "post", "both"
_CUES: Final = (
    # negation
    *[(c, "neg", _PRE) for c in (
        r"no", r"not", r"without", r"negative for", r"free of", r"clear of", r"no evidence (?:of|for)",
        r"no (?:radiographic |definite |convincing )*(?:evidence|signs?) (?:of|for)", r"absence of", r"absent",
        r"nor", r"resolution of", r"resolved", r"rather than", r"never", r"ruled out", r"excluded",
    )],
    *[(c, "neg", _POST) for c in (
        r"(?:has|have|had) (?:since |now |completely |entirely )?(?:resolved|cleared)", r"resolved", r"cleared",
        r"(?:is |are )?absent",
        r"not (?:seen|identified|visualized|visualised|present|demonstrated|evident|appreciated|visible)",
        r"not", r"no longer(?: seen| visible| present| evident| identified| demonstrated| appreciated)?",
        r"(?:is |are |has been |have been )?(?:ruled out|excluded)", r"gone",
    )],
    # uncertainty
    *[(c, "unc", _PRE) for c in (
        r"possible", r"possibly", r"probable", r"probably", r"likely", r"presumed", r"presumably",
        r"may (?:represent|reflect|be|indicate|have|signify)", r"might (?:represent|reflect|be|indicate)",
        r"could (?:represent|reflect|be|indicate)", r"cannot (?:exclude|rule out)", r"can ?not (?:exclude|rule out)",
        r"can't (?:exclude|rule out)", r"unable to (?:exclude|rule out)", r"not (?:entirely )?(?:exclude|rule out)",
        r"suspicious (?:for|of)", r"suspicion (?:of|for)", r"suspected", r"suspect", r"questionable",
        r"question of", r"equivocal", r"concerning for", r"concern for", r"worrisome for", r"suggestive of",
        r"suggests?", r"suggesting", r"(?:raising|raises) the possibility of", r"differential (?:diagnosis )?includes?",
        r"versus", r"vs\.?", r"rule out", r"r/o", r"evaluate for", r"to exclude", r"unlikely", r"uncertain",
        r"indeterminate", r"borderline", r"may", r"might", r"\?",
    )],
    *[(c, "unc", _POST) for c in (
        r"(?:cannot|can ?not|can't) be (?:entirely |completely )?(?:excluded|ruled out)",
        r"(?:is |are )?not (?:entirely |completely )?(?:excluded|ruled out)",
        r"(?:is|are) (?:possible|suspected|questioned|likely|unlikely|uncertain|equivocal|not certain)",
        r"suspected", r"questioned", r"unlikely", r"\?",
    )],
    # pseudo-cues: look like negation, say that something did not change
    *[(c, "pseudo", _BOTH) for c in (
        r"no (?:significant |appreciable |interval |definite )*(?:change|increase|decrease|progression|growth)",
        r"not (?:significantly |appreciably )?(?:changed|increased|decreased|different)",
        r"without (?:significant |interval )*(?:change|progression)", r"not only", r"no further",
    )],
)


def _merge_cues(cues: Sequence[tuple[str, str, str]]) -> tuple[tuple[str, str, str], ...]:
    """One entry per pattern: a cue listed both before and after ("not", "resolved") reaches both ways."""
    merged: dict[str, tuple[str, str]] = {}
    for pattern, kind, direction in cues:
        if pattern in merged:
            old_kind, old_direction = merged[pattern]
            if old_kind != kind:
                raise AssertionError(f"cue {pattern!r} is listed as {old_kind} and {kind}")
            direction = direction if direction == old_direction else _BOTH
        merged[pattern] = (kind, direction)
    # longest first: the regex takes the first alternative that matches at a position
    return tuple(sorted(((p, k, d) for p, (k, d) in merged.items()), key=lambda item: -len(item[0])))


_CUE_TABLE: Final = _merge_cues(_CUES)
# The word-start test is outside the alternation, so most positions fail at once.
_CUE_RE: Final = re.compile(
    r"(?<![a-z0-9'])(?:"
    + "|".join(rf"(?P<c{i}>{p})(?![a-z0-9'])" for i, (p, _, _) in enumerate(_CUE_TABLE) if p != r"\?")
    + ")|"
    + "|".join(rf"(?P<c{i}>\?)" for i, (p, _, _) in enumerate(_CUE_TABLE) if p == r"\?")
)

# Words that start a new positive item after a comma or "and": "no pneumothorax, small effusion".
_POSITIVE_START = (
    r"small|moderate|large|trace|tiny|minimal|mild|marked|massive|new|increased|increasing|decreased|"
    r"decreasing|persistent|stable|unchanged|residual|extensive|dense|patchy|subtle|loculated|worsening|improving"
)
_TERMINATORS: Final = re.compile(
    r"\b(?:but|however|although|though|except|apart from|aside from|which|whereas|while|yet|nevertheless|"
    r"other than|with the exception of|there (?:is|are|was|were|has been|have been)|consistent with|"
    r"in keeping with|compatible with|due to|secondary to)\b"
    rf"|(?:,|\band\b|\bwith\b)\s+(?:a |an )?(?=(?:{_POSITIVE_START})\b)"
)

_PRE_WINDOW = 6  # words from a cue (or from the last finding in its list) to a mention
_POST_WINDOW = 4  # words from a mention to a cue after it

_WORD_RE: Final = re.compile(r"[a-z0-9]+(?:['’/-][a-z0-9]+)*")


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Matcher:
    mentions: re.Pattern[str] | None
    absent_phrases: re.Pattern[str] | None
    heart: bool


def _canonical(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def _matcher(name: str) -> _Matcher:
    key = _canonical(name)
    key = _ALIASES.get(key, key)
    if key in _SYNONYMS:
        synonyms = _SYNONYMS[key]
        phrases = _ABSENT_PHRASES.get(key, ())
    else:
        synonyms = (_literal(key),) if key else ()
        phrases = ()
    return _Matcher(
        mentions=re.compile(rf"(?<![a-z0-9])(?:{'|'.join(synonyms)})(?![a-z0-9])") if synonyms else None,
        absent_phrases=re.compile(rf"(?<![a-z0-9])(?:{'|'.join(phrases)})(?![a-z0-9])") if phrases else None,
        heart=key == "cardiomegaly",
    )


def _literal(name: str) -> str:
    """A finding we have no synonyms for: its own words, the last one singular or plural."""
    words = re.findall(r"[a-z0-9]+", name)
    if not words:
        return re.escape(name)
    last = words[-1]
    forms = {last, last + "s", last + "es"}
    if last.endswith("y") and len(last) > 2:
        forms.add(last[:-1] + "ies")
    if last.endswith("s"):
        forms.add(last[:-1])
    if last.endswith("es"):
        forms.add(last[:-2])
    if last.endswith("ies"):
        forms.add(last[:-3] + "y")
    head = [re.escape(w) for w in words[:-1]]
    tail = "(?:" + "|".join(sorted(map(re.escape, forms), key=len, reverse=True)) + ")"
    return r"[\s-]+".join([*head, tail])


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+|(?<=[.!;])(?=[A-Z])")


def _sentences(text: str) -> list[str]:
    text = text.replace("\r", "\n")
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


@dataclass(frozen=True)
class _Mention:
    finding: str
    start: int
    end: int
    fixed: Status | None  # a phrase that states its status itself ("lungs are clear")
    phrase: str


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    kind: str  # "neg", "unc", "pseudo"
    direction: str
    text: str


def _normalise(sentence: str) -> str:
    s = sentence.lower().replace("’", "'").replace("\u2013", "-").replace("\u2014", "-")
    return " ".join(s.split())


def _label_sentence(sentence: str, matchers: Mapping[str, _Matcher]) -> dict[str, tuple[Status, str]]:
    s = _normalise(sentence)

    mentions: list[_Mention] = []
    heart_spans: list[tuple[int, int]] = []
    for name, m in matchers.items():
        if m.heart:
            for hit in _HEART_SUBJECT.finditer(s):
                status = _heart_status(hit)
                mentions.append(_Mention(name, hit.start(), hit.end(), None if status == "present" else status,
                                         hit.group(0)))
                heart_spans.append(hit.span())
        if m.mentions is not None:
            for hit in m.mentions.finditer(s):
                mentions.append(_Mention(name, hit.start(), hit.end(), None, hit.group(0)))
        if m.absent_phrases is not None:
            for hit in m.absent_phrases.finditer(s):
                mentions.append(_Mention(name, hit.start(), hit.end(), "absent", hit.group(0)))
    if not mentions:
        return {}
    mentions.sort(key=lambda x: (x.start, x.end))

    cues = [
        c for c in _find_cues(s)
        if c.kind != "pseudo" and not any(a <= c.start < b for a, b in heart_spans)  # "heart is not enlarged"
    ]
    terminators = [t.span() for t in _TERMINATORS.finditer(s)]
    word_starts = [w.start() for w in _WORD_RE.finditer(s)]
    word_ends = [w.end() for w in _WORD_RE.finditer(s)]

    def words_between(a: int, b: int) -> int:
        # words lying wholly inside [a, b): starts from a on, ends up to b
        return max(0, bisect.bisect_right(word_ends, b) - bisect.bisect_left(word_starts, a))

    def blocked(a: int, b: int) -> bool:
        return any(a <= ts and te <= b for ts, te in terminators)

    # A pre-cue's reach grows along a list of findings: "no effusion, pneumothorax or consolidation".
    reach = {id(c): c.end for c in cues}
    result: dict[str, tuple[Status, str]] = {}
    for m in mentions:
        if m.fixed is not None:
            status, cue_text = m.fixed, m.phrase
        else:
            candidates: list[tuple[int, int, _Cue]] = []
            for c in cues:
                if c.direction in (_PRE, _BOTH) and c.end <= m.start:
                    start = reach[id(c)]
                    if not blocked(c.end, m.start) and words_between(start, m.start) <= _PRE_WINDOW:
                        candidates.append((words_between(c.end, m.start), 0 if c.kind == "unc" else 1, c))
                if c.direction in (_POST, _BOTH) and c.start >= m.end:
                    between = s[m.end:c.start]
                    if ("," not in between and not blocked(m.end, c.start)
                            and words_between(m.end, c.start) <= _POST_WINDOW):
                        candidates.append((words_between(m.end, c.start), 0 if c.kind == "unc" else 1, c))
            if candidates:
                _, _, cue = min(candidates, key=lambda item: (item[0], item[1]))
                status = "absent" if cue.kind == "neg" else "uncertain"
                cue_text = cue.text
                if cue.direction in (_PRE, _BOTH) and cue.end <= m.start:
                    reach[id(cue)] = max(reach[id(cue)], m.end)
            else:
                status, cue_text = "present", ""
        previous = result.get(m.finding)
        if previous is None or _RANK[status] > _RANK[previous[0]]:
            result[m.finding] = (status, cue_text)
    return result


def _find_cues(s: str) -> list[_Cue]:
    out = []
    for hit in _CUE_RE.finditer(s):
        index = int(hit.lastgroup[1:])  # type: ignore[index]
        _, kind, direction = _CUE_TABLE[index]
        out.append(_Cue(hit.start(), hit.end(), kind, direction, hit.group(0)))
    return out
