"""Language codes: BLOOM's languages, the other ISO 639-1 codes a spec may name, BLOOMZ's language weights, and
the codes each published release uses for our languages."""

from __future__ import annotations

BLOOM_LANGUAGES = (
    "ak ar as bm bn ca code en es eu fon fr gu hi id ig ki kn lg ln ml mr ne nso ny or pa pt rn rw sn st sw "
    "ta te tn ts tum tw ur vi wo xh yo zh zu"
).split()

OTHER_LANGUAGES = (
    "aa ab ae af am an av ay az ba be bg bh bi bo br bs ce ch co cr cs cu cv cy da de dv dz ee el eo et fa "
    "ff fi fj fo fy ga gd gl gn gv ha he ho hr ht hu hy hz ia ie ii ik io is it iu ja jp jv ka kg kj kk kl km "
    "ko kr ks ku kv kw ky la lb li lo lt lu lv mg mh mi mk mn ms mt my na nb nd ng nl nn no nr nv oc oj om os "
    "pi pl ps qu rm ro ru sa sc sd se sg si sk sl sm so sq sr ss su sv tg th ti tk tl to tr tt ty ug uk uz ve "
    "vo wa yi za"
).split()

KNOWN_LANGUAGES = frozenset(BLOOM_LANGUAGES) | frozenset(OTHER_LANGUAGES)

BLOOMZ_LANGUAGE_WEIGHTS = {
    "en": 0.3925, "es": 0.0798, "pt": 0.0646, "code": 0.0593, "fr": 0.0584, "ar": 0.0493, "id": 0.0485,
    "zh": 0.0483, "hi": 0.0463, "vi": 0.0327,
}


RELEASE_CODES: dict[str, tuple[str, ...]] = {
    "ak": ("aka_Latn",), "ar": ("arb_Arab", "ara_Arab"), "as": ("asm_Beng",), "bm": ("bam_Latn",),
    "bn": ("ben_Beng",), "ca": ("cat_Latn",), "en": ("eng_Latn",), "es": ("spa_Latn",), "eu": ("eus_Latn",),
    "fon": ("fon_Latn",), "fr": ("fra_Latn",), "gu": ("guj_Gujr",), "hi": ("hin_Deva",), "id": ("ind_Latn",),
    "ig": ("ibo_Latn",), "ki": ("kik_Latn",), "kn": ("kan_Knda",), "lg": ("lug_Latn",), "ln": ("lin_Latn",),
    "ml": ("mal_Mlym",), "mr": ("mar_Deva",), "ne": ("npi_Deva", "nep_Deva"), "nso": ("nso_Latn",),
    "ny": ("nya_Latn",), "or": ("ory_Orya", "ori_Orya"), "pa": ("pan_Guru",), "pt": ("por_Latn",),
    "rn": ("run_Latn",), "rw": ("kin_Latn",), "sn": ("sna_Latn",), "st": ("sot_Latn",),
    "sw": ("swh_Latn", "swa_Latn"), "ta": ("tam_Taml",), "te": ("tel_Telu",), "tn": ("tsn_Latn",),
    "ts": ("tso_Latn",), "tum": ("tum_Latn",), "tw": ("twi_Latn",), "ur": ("urd_Arab",), "vi": ("vie_Latn",),
    "wo": ("wol_Latn",), "xh": ("xho_Latn",), "yo": ("yor_Latn",), "zh": ("zho_Hans", "zho_Hant", "cmn_Hans"),
    "zu": ("zul_Latn",), "code": ("code", "python", "java", "jupyter-notebook"),
}

_OURS = {code.lower(): ours for ours, codes in RELEASE_CODES.items() for code in codes}

_OURS_BY_BASE = {code.split("_")[0].lower(): ours for ours, codes in RELEASE_CODES.items() for code in codes}

def our_language(code: str | None) -> str | None:
    """Our code for a release's language code (``fra_Latn``, ``fra``, ``python``), or None outside BLOOM's."""
    if not code:
        return None
    code = str(code).strip().lower()
    return _OURS.get(code) or (_OURS_BY_BASE.get(code) if "_" not in code else None)

def release_codes(language: str) -> set[str]:
    """The release codes a source's ``language`` is read from (lower case): BLOOM's through ``RELEASE_CODES``,
    any other as written (the release's own code, for a source that allows non-BLOOM languages)."""
    return {c.lower() for c in RELEASE_CODES.get(language, (language,))}
