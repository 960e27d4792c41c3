"""The phantom's words: a templated report that says exactly the findings drawn, and a clinical history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .dicom_file import _Person
from .findings import FINDINGS, FindingDetail


@dataclass(frozen=True)
class Report:
    """A radiology report in the two sections the paper's model writes."""

    findings: str
    impression: str

    @property
    def text(self) -> str:
        return f"FINDINGS: {self.findings}\n\nIMPRESSION: {self.impression}"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _choose(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _lobe(side: str, zone: str) -> str:
    if side == "left" and zone == "middle":
        return "lingula"
    return f"{side} {zone} lobe"


def _lobe_adj(side: str, zone: str) -> str:
    return "lingular" if side == "left" and zone == "middle" else f"{side} {zone} lobe"


def _sentences(name: str, d: FindingDetail, rng: np.random.Generator) -> tuple[str, str]:
    """(a FINDINGS sentence, an IMPRESSION phrase) for one present finding."""
    side, size, zone = d.side, d.size, d.zone
    if name == "pleural effusion":
        if side == "bilateral":
            f = [f"{_cap(size)} bilateral pleural effusions.",
                 f"There are {size} bilateral pleural effusions.",
                 f"Bilateral {size} pleural effusions with blunting of both costophrenic angles.",
                 f"{_cap(size)} pleural effusions on both sides, with meniscus-shaped fluid at both bases."]
            return _choose(rng, f), f"{_cap(size)} bilateral pleural effusions."
        f = [f"There is a {size} {side} pleural effusion.",
             f"{_cap(size)} {side} pleural effusion.",
             f"{_cap(size)} {side} pleural effusion with blunting of the {side} costophrenic angle.",
             f"A {size} amount of {side} pleural fluid is present.",
             f"Blunting of the {side} costophrenic angle with a meniscus, in keeping with a {size} pleural effusion."]
        return _choose(rng, f), f"{_cap(size)} {side} pleural effusion."
    if name == "pneumothorax":
        if side == "bilateral":
            f = [f"{_cap(size)} bilateral pneumothoraces.",
                 f"Bilateral {size} pneumothoraces, with visible pleural lines at both apices."]
            return _choose(rng, f), f"{_cap(size)} bilateral pneumothoraces."
        f = [f"There is a {size} {side} pneumothorax, with a visible pleural line at the {side} apex.",
             f"{_cap(size)} {side} apical pneumothorax.",
             f"{_cap(size)} {side} pneumothorax with a visible visceral pleural line and no lung markings beyond it.",
             f"A {size} {side} pneumothorax is present."]
        return _choose(rng, f), f"{_cap(size)} {side} pneumothorax."
    if name == "consolidation":
        extent = {"small": "focal ", "moderate": "", "large": "extensive "}[size]
        if side == "bilateral":
            f = [f"Bilateral {extent}{zone} lobe consolidation with air bronchograms.",
                 f"There is {extent}consolidation in both {zone} lobes."]
            return _choose(rng, f), f"Bilateral {zone} lobe consolidation."
        lobe, adj = _lobe(side, zone), _lobe_adj(side, zone)
        f = [f"{_cap(extent)}consolidation in the {lobe} with air bronchograms.",
             f"There is {extent or 'dense '}consolidation in the {lobe}.",
             f"{_cap(adj)} {extent}consolidation.",
             f"{_cap(extent)}airspace consolidation in the {lobe}, with air bronchograms.",
             f"{_cap(extent)}airspace disease in the {lobe}."]
        return _choose(rng, f), f"{_cap(adj)} consolidation."
    if name == "atelectasis":
        if side == "bilateral":
            f = ["Bibasilar atelectasis.", "Bilateral basal atelectasis.", "Linear atelectasis at both lung bases.",
                 "Plate-like atelectasis at both bases."]
            return _choose(rng, f), "Bibasilar atelectasis."
        if d.kind == "wedge":
            lobe, adj = _lobe(side, zone), _lobe_adj(side, zone)
            f = [f"{_cap(adj)} collapse with volume loss.",
                 f"Atelectasis of the {lobe} with volume loss and elevation of the {side} hemidiaphragm.",
                 f"Wedge-shaped {adj} atelectasis with volume loss."]
            return _choose(rng, f), f"{_cap(adj)} atelectasis."
        if zone == "lower":
            f = [f"{_cap(side)} basilar atelectasis.",
                 f"Linear atelectasis at the {side} base.",
                 f"Plate-like atelectasis in the {side} lower zone.",
                 f"Subsegmental atelectasis at the {side} lung base."]
            return _choose(rng, f), f"{_cap(side)} basilar atelectasis."
        f = [f"Linear atelectasis in the {side} mid zone.", f"Subsegmental atelectasis in the {side} mid zone.",
             f"Plate-like atelectasis in the {side} mid zone."]
        return _choose(rng, f), f"{_cap(side)} mid zone atelectasis."
    if name == "cardiomegaly":
        adverb = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[size]
        f = ["The heart is enlarged.",
             f"{_cap(size)} cardiomegaly.",
             f"The cardiac silhouette is {adverb} enlarged.",
             "Heart size is enlarged.",
             "Enlarged cardiac silhouette, in keeping with cardiomegaly.",
             "The cardiothoracic ratio is increased, consistent with cardiomegaly.",
             "Cardiomegaly."]
        return _choose(rng, f), _choose(rng, [f"{_cap(size)} cardiomegaly.", "Cardiomegaly."])
    if name == "lung opacity":
        zw = "mid" if zone == "middle" else zone
        if side == "bilateral":
            f = [f"Hazy bilateral {zw} zone opacities.",
                 f"Ill-defined opacities in both {zw} zones.",
                 f"Patchy ill-defined opacification in both {zw} zones."]
            return _choose(rng, f), f"Bilateral {zw} zone opacities."
        f = [f"Hazy opacity in the {side} {zw} zone.",
             f"Ill-defined opacification in the {side} {zw} zone.",
             f"Patchy ill-defined opacities in the {side} {zw} zone.",
             f"Increased haziness in the {side} {zw} zone.",
             f"There is a hazy, ill-defined opacity in the {side} {zw} zone."]
        return _choose(rng, f), f"{_cap(side)} {zw} zone opacity."
    raise AssertionError(name)


def _report(details: Mapping[str, FindingDetail], rng: np.random.Generator) -> Report:
    present = set(details)
    said: dict[str, str] = {}
    impression: list[str] = []
    for name in FINDINGS:
        if name in present:
            sentence, phrase = _sentences(name, details[name], rng)
            said[name] = _cap(sentence)
            impression.append(_cap(phrase))

    parts: list[str] = []
    # heart and mediastinum
    if "cardiomegaly" in present:
        parts.append(said["cardiomegaly"])
    else:
        parts.append(_choose(rng, ["The heart size is normal.", "Heart size is within normal limits.",
                                   "The cardiac silhouette is normal in size.", "Normal heart size.",
                                   "The cardiomediastinal silhouette is within normal limits.",
                                   "The heart is not enlarged."]))
    # lungs
    parenchyma = [n for n in ("consolidation", "atelectasis", "lung opacity") if n in present]
    if not parenchyma:
        parts.append(_choose(rng, ["The lungs are clear.", "Lungs are clear bilaterally.",
                                   "The lungs are well expanded and clear.", "No focal consolidation or opacity."]))
    else:
        atel = details.get("atelectasis")
        joined = False
        if "consolidation" not in present and atel is not None and atel.kind == "linear" and atel.side != "bilateral" \
                and atel.zone == "lower" and rng.random() < 0.4:
            parts.append(f"No focal consolidation, but there is {atel.side} basilar atelectasis.")
            joined = True
        for n in parenchyma:
            if not (joined and n == "atelectasis"):
                parts.append(said[n])
        if "consolidation" not in present and not joined and rng.random() < 0.6:
            parts.append(_choose(rng, ["No focal consolidation.", "No consolidation.", "No airspace consolidation."]))
        if "lung opacity" not in present and rng.random() < 0.3:
            parts.append("No other focal opacity.")
        if "atelectasis" not in present and rng.random() < 0.2:
            parts.append("No atelectasis.")
    # pleura
    effusion, ptx = "pleural effusion" in present, "pneumothorax" in present
    if effusion:
        parts.append(said["pleural effusion"])
    if ptx:
        parts.append(said["pneumothorax"])
    if not effusion and not ptx:
        parts.append(_choose(rng, ["No pleural effusion or pneumothorax.",
                                   "There is no pleural effusion or pneumothorax.",
                                   "No effusion or pneumothorax is seen.",
                                   "The costophrenic angles are sharp and there is no pneumothorax."]))
    elif not effusion:
        parts.append(_choose(rng, ["No pleural effusion.", "There is no pleural effusion.",
                                   "No evidence of pleural effusion."]))
    elif not ptx:
        parts.append(_choose(rng, ["No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."]))
    # bones
    if rng.random() < 0.5:
        parts.append(_choose(rng, ["No acute osseous abnormality.",
                                   "The visualized osseous structures are unremarkable."]))

    if not impression:
        impression_text = _choose(rng, ["No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process.",
                                        "Normal chest radiograph.", "No active disease."])
    elif len(impression) >= 2 and rng.random() < 0.3:
        first, second = impression[0].rstrip("."), impression[1].rstrip(".")
        rest = impression[2:]
        impression_text = " ".join([f"{first} and {second[:1].lower()}{second[1:]}.", *rest])
    else:
        impression_text = " ".join(impression)
    return Report(findings=" ".join(parts), impression=impression_text)


_HISTORY_GENERIC = ("Cough.", "Shortness of breath.", "Chest pain.", "Pre-operative assessment.", "Follow-up.",
                    "Routine check-up.", "Fall, chest wall pain.", "Fever.", "Weight loss.", "Haemoptysis.")
_HISTORY_BY_FINDING = MappingProxyType({
    "pleural effusion": ("Breathlessness, known heart failure.", "Dyspnoea on exertion."),
    "pneumothorax": ("Sudden onset pleuritic chest pain.", "Acute breathlessness after coughing fit."),
    "consolidation": ("Fever and productive cough.", "Fever, raised inflammatory markers."),
    "atelectasis": ("Post-operative day 2, low oxygen saturation.", "Reduced breath sounds at the base."),
    "cardiomegaly": ("Ankle swelling and breathlessness.", "Known hypertension, dyspnoea."),
    "lung opacity": ("Cough and low-grade fever.", "Persistent cough."),
})


def _history(person: _Person, details: Mapping[str, FindingDetail], rng: np.random.Generator) -> str:
    """A line of clinical history: about half the time it hints at one finding that is present,
    never naming it, so a model given the history still has to look at the image."""
    who = f"{person.age}-year-old {'woman' if person.sex == 'F' else 'man'}."
    present = [n for n in FINDINGS if n in details]
    if present and rng.random() < 0.5:
        reason = _choose(rng, _HISTORY_BY_FINDING[_choose(rng, present)])
    else:
        reason = _choose(rng, _HISTORY_GENERIC)
    return f"{who} {reason}"
