"""Write the bundled demo sources (deterministic): small rows in the schemas of real xP3 datasets.

    python data_mixtures/demo_data/make_demo_data.py      # rewrites the *.jsonl files beside this script

Four task kinds in en, fr, es, zh, each with clear lexical cues a 2-layer tiny BLOOM can learn:
- sentiment/{lang}.jsonl      imdb schema     {"text", "label"}   0 negative, 1 positive (the adjective decides)
- topic/{lang}.jsonl          ag_news schema  {"text", "label"}   0 World, 1 Sports, 2 Business, 3 Sci/Tech
- translation/en-{fr,es,zh}.jsonl  opus schema {"translation": {"en": ..., xx: ...}} short noun phrases
- qa/{en,fr}.jsonl            squad schema    {"id", "title", "context", "question", "answers": {...}}
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SEED = 1234

# -- sentiment: "<subject> <verb> <adverb> <adjective><tail>." --------------------------------------------------
SENTIMENT = {
    "en": dict(
        subjects=["The movie", "This book", "The restaurant", "My new phone", "The hotel", "This album",
                  "The concert", "The service", "The trip", "This game"],
        verb="was", adverbs=["really", "truly", "very", "quite", "absolutely"],
        pos=["wonderful", "excellent", "great", "delightful", "amazing"],
        neg=["terrible", "awful", "boring", "disappointing", "horrible"],
        tails=["", " overall", " this time", " in my opinion"], end="."),
    "fr": dict(
        subjects=["Le film", "Ce livre", "Le restaurant", "Mon nouveau téléphone", "L'hôtel", "Cet album",
                  "Le concert", "Le service", "Le voyage", "Ce jeu"],
        verb="était", adverbs=["vraiment", "très", "tout à fait", "assez", "absolument"],
        pos=["merveilleux", "excellent", "génial", "formidable", "superbe"],
        neg=["terrible", "affreux", "ennuyeux", "décevant", "horrible"],
        tails=["", " dans l'ensemble", " cette fois", " à mon avis"], end="."),
    "es": dict(
        subjects=["La película", "Este libro", "El restaurante", "Mi nuevo teléfono", "El hotel", "Este álbum",
                  "El concierto", "El servicio", "El viaje", "Este juego"],
        verb="fue", adverbs=["realmente", "muy", "bastante", "totalmente", "absolutamente"],
        pos=["maravilloso", "excelente", "genial", "estupendo", "fantástico"],
        neg=["terrible", "horrible", "aburrido", "decepcionante", "pésimo"],
        tails=["", " en general", " esta vez", " en mi opinión"], end="."),
    "zh": dict(
        subjects=["这部电影", "这本书", "这家餐厅", "我的新手机", "这家酒店", "这张专辑", "这场音乐会", "这里的服务",
                  "这次旅行", "这个游戏"],
        verb="", adverbs=["真的", "非常", "特别", "十分", "相当"],
        pos=["精彩", "出色", "棒", "令人满意", "好"],
        neg=["糟糕", "差劲", "无聊", "令人失望", "差"],
        tails=["", "，总的来说", "，这一次", "，我觉得"], end="。"),
}


def sentiment_rows(lang: str, rng: random.Random, per_label: int = 50) -> list[dict]:
    g = SENTIMENT[lang]
    rows = []
    for label, adjectives in ((1, g["pos"]), (0, g["neg"])):
        combos = list(itertools.product(g["subjects"], g["adverbs"], adjectives, g["tails"]))
        for subject, adverb, adjective, tail in rng.sample(combos, per_label):
            if lang == "zh":
                text = f"{subject}{adverb}{adjective}{tail}{g['end']}"
            else:
                text = f"{subject} {g['verb']} {adverb} {adjective}{tail}{g['end']}"
            rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


# -- topic (ag_news labels): "<actor> <action> <time>." ---------------------------------------------------------
TOPIC = {
    "en": dict(
        actors=[["The president", "The prime minister", "The foreign minister", "Government leaders", "The United Nations"],
                ["The national team", "The coach", "The star striker", "The tennis champion", "The home club"],
                ["The central bank", "Shares of the company", "The retail giant", "Investors", "The oil market"],
                ["Scientists", "The space agency", "Researchers", "A team of biologists", "Engineers"]],
        actions=[["met to discuss the border dispute", "called for new elections", "signed a peace agreement",
                  "visited the capital for talks", "condemned the attack on civilians"],
                 ["won the final match", "scored two goals in the second half", "lost the league game",
                  "signed a new player", "celebrated the championship title"],
                 ["raised interest rates", "reported record profits", "fell sharply on the stock market",
                  "announced a merger deal", "cut jobs after weak sales"],
                 ["discovered a new planet", "published a study on cells", "launched a satellite",
                  "developed a faster computer chip", "found water on the moon"]],
        times=["on Monday", "this week", "yesterday", "last night", "on Friday"], end="."),
    "fr": dict(
        actors=[["Le président", "Le Premier ministre", "Le ministre des affaires étrangères", "Les dirigeants du gouvernement", "Les Nations unies"],
                ["L'équipe nationale", "L'entraîneur", "L'attaquant vedette", "Le champion de tennis", "Le club local"],
                ["La banque centrale", "Les actions de l'entreprise", "Le géant de la distribution", "Les investisseurs", "Le marché du pétrole"],
                ["Les scientifiques", "L'agence spatiale", "Les chercheurs", "Une équipe de biologistes", "Les ingénieurs"]],
        actions=[["discuté du conflit frontalier", "appelé à de nouvelles élections", "signé un accord de paix",
                  "visité la capitale pour des négociations", "condamné l'attaque contre les civils"],
                 ["gagné le match final", "marqué deux buts en seconde période", "perdu le match de championnat",
                  "recruté un nouveau joueur", "fêté le titre de champion"],
                 ["relevé les taux d'intérêt", "annoncé des bénéfices records", "chuté en bourse",
                  "annoncé une fusion", "supprimé des emplois après de faibles ventes"],
                 ["découvert une nouvelle planète", "publié une étude sur les cellules", "lancé un satellite",
                  "conçu une puce informatique plus rapide", "trouvé de l'eau sur la lune"]],
        times=["lundi", "cette semaine", "hier", "hier soir", "vendredi"], end="."),
    "es": dict(
        actors=[["El presidente", "El primer ministro", "El ministro de exteriores", "Los líderes del gobierno", "Las Naciones Unidas"],
                ["La selección nacional", "El entrenador", "El delantero estrella", "El campeón de tenis", "El club local"],
                ["El banco central", "Las acciones de la empresa", "El gigante minorista", "Los inversores", "El mercado del petróleo"],
                ["Los científicos", "La agencia espacial", "Los investigadores", "Un equipo de biólogos", "Los ingenieros"]],
        actions=[["discutido la disputa fronteriza", "pedido nuevas elecciones", "firmado un acuerdo de paz",
                  "visitado la capital para negociar", "condenado el ataque contra civiles"],
                 ["ganado el partido final", "marcado dos goles en la segunda parte", "perdido el partido de liga",
                  "fichado a un nuevo jugador", "celebrado el título de campeón"],
                 ["subido los tipos de interés", "anunciado beneficios récord", "caído en la bolsa",
                  "anunciado una fusión", "recortado empleos tras malas ventas"],
                 ["descubierto un nuevo planeta", "publicado un estudio sobre células", "lanzado un satélite",
                  "desarrollado un chip más rápido", "encontrado agua en la luna"]],
        times=["el lunes", "esta semana", "ayer", "anoche", "el viernes"], end="."),
    "zh": dict(
        actors=[["总统", "总理", "外交部长", "政府领导人", "联合国"],
                ["国家队", "主教练", "明星前锋", "网球冠军", "主队"],
                ["中央银行", "公司股票", "零售巨头", "投资者", "石油市场"],
                ["科学家", "航天局", "研究人员", "生物学家团队", "工程师"]],
        actions=[["讨论了边境争端", "呼吁举行新的选举", "签署了和平协议", "访问首都进行会谈", "谴责了对平民的袭击"],
                 ["赢得了决赛", "下半场打进两球", "输掉了联赛比赛", "签下了一名新球员", "庆祝夺得冠军"],
                 ["提高了利率", "公布了创纪录的利润", "在股市大幅下跌", "宣布了合并交易", "因销售疲软而裁员"],
                 ["发现了一颗新行星", "发表了一项细胞研究", "发射了一颗卫星", "研制出更快的计算机芯片", "在月球上发现了水"]],
        times=["周一", "本周", "昨天", "昨晚", "周五"], end="。"),
}


def _auxiliary(lang: str, actor: str) -> str:
    """French and Spanish actions are past participles; the auxiliary agrees with the actor."""
    plural = actor.split()[0] in ("Les", "Los", "Las")
    if lang == "fr":
        return "ont " if plural else "a "
    if lang == "es":
        return "han " if plural else "ha "
    return ""


def topic_rows(lang: str, rng: random.Random, per_label: int = 25) -> list[dict]:
    g = TOPIC[lang]
    rows = []
    for label in range(4):
        combos = list(itertools.product(g["actors"][label], g["actions"][label], g["times"]))
        for actor, action, when in rng.sample(combos, per_label):
            if lang == "zh":
                text = f"{when}{actor}{action}{g['end']}"
            else:
                text = f"{actor} {_auxiliary(lang, actor)}{action} {when}{g['end']}"
            rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


# -- translation: "<I see> the <adj> <noun>." -------------------------------------------------------------------
# noun: en, (fr, gender), (es, gender), zh
NOUNS = [("house", ("maison", "f"), ("casa", "f"), "房子"), ("car", ("voiture", "f"), ("coche", "m"), "汽车"),
         ("book", ("livre", "m"), ("libro", "m"), "书"), ("dog", ("chien", "m"), ("perro", "m"), "狗"),
         ("cat", ("chat", "m"), ("gato", "m"), "猫"), ("table", ("table", "f"), ("mesa", "f"), "桌子"),
         ("flower", ("fleur", "f"), ("flor", "f"), "花"), ("bird", ("oiseau", "m"), ("pájaro", "m"), "鸟")]
# adjective: en, fr (m, f, before noun?), es (m, f), zh
ADJECTIVES = [("red", ("rouge", "rouge", False), ("rojo", "roja"), "红色的"),
              ("big", ("grand", "grande", True), ("grande", "grande"), "大"),
              ("small", ("petit", "petite", True), ("pequeño", "pequeña"), "小"),
              ("green", ("vert", "verte", False), ("verde", "verde"), "绿色的"),
              ("white", ("blanc", "blanche", False), ("blanco", "blanca"), "白色的"),
              ("black", ("noir", "noire", False), ("negro", "negra"), "黑色的")]
VERBS = [("I see", "Je vois", "Veo", "我看到"), ("I like", "J'aime", "Me gusta", "我喜欢"),
         ("We have", "Nous avons", "Tenemos", "我们有"), ("They want", "Ils veulent", "Quieren", "他们想要")]


def _fr_phrase(noun, adj) -> str:
    word, gender = noun
    form = adj[0] if gender == "m" else adj[1]
    phrase = f"{form} {word}" if adj[2] else f"{word} {form}"
    det = "le" if gender == "m" else "la"
    return f"l'{phrase}" if phrase[0] in "aeiouhé" else f"{det} {phrase}"


def translation_rows(lang: str, rng: random.Random, n: int = 80) -> list[dict]:
    combos = list(itertools.product(VERBS, ADJECTIVES, NOUNS))
    rows = []
    for verb, adj, noun in rng.sample(combos, n):
        en = f"{verb[0]} the {adj[0]} {noun[0]}."
        if lang == "fr":
            other = f"{verb[1]} {_fr_phrase(noun[1], adj[1])}."
        elif lang == "es":
            word, gender = noun[2]
            other = f"{verb[2]} {'el' if gender == 'm' else 'la'} {word} {adj[2][0] if gender == 'm' else adj[2][1]}."
        else:
            other = f"{verb[3]}{adj[3]}{noun[3]}。"
        rows.append({"translation": {"en": en, lang: other}})
    return rows


# -- extractive QA (squad schema) -------------------------------------------------------------------------------
QA = {
    "en": dict(names=["Anna", "Omar", "Lucia", "Kenji", "Maria", "David", "Fatima", "Pierre", "Mei", "Carlos"],
               cities=["Paris", "Cairo", "Lima", "Osaka", "Madrid", "Toronto", "Nairobi", "Berlin"],
               jobs=["teacher", "doctor", "baker", "pilot", "farmer", "nurse", "painter", "chef"],
               hobbies=["chess", "football", "music", "gardening", "swimming", "cooking"],
               context="{n} lives in {c} and works as a {j}. In the evenings, {n} enjoys {h}.",
               questions=[("Where does {n} live?", "c"), ("What is {n}'s job?", "j"),
                          ("What does {n} enjoy in the evenings?", "h")]),
    "fr": dict(names=["Anna", "Omar", "Lucia", "Kenji", "Maria", "David", "Fatima", "Pierre", "Mei", "Carlos"],
               cities=["Paris", "Le Caire", "Lima", "Osaka", "Madrid", "Toronto", "Nairobi", "Berlin"],
               jobs=["professeur", "médecin", "boulanger", "pilote", "agriculteur", "infirmier", "peintre", "cuisinier"],
               hobbies=["les échecs", "le football", "la musique", "le jardinage", "la natation", "la cuisine"],
               context="{n} habite à {c} et travaille comme {j}. Le soir, {n} aime {h}.",
               questions=[("Où habite {n} ?", "c"), ("Quel est le métier de {n} ?", "j"),
                          ("Qu'est-ce que {n} aime le soir ?", "h")]),
}


def qa_rows(lang: str, rng: random.Random, n: int = 80) -> list[dict]:
    g = QA[lang]
    rows = []
    combos = list(itertools.product(g["names"], g["cities"], g["jobs"], g["hobbies"]))
    for k, (name, city, job, hobby) in enumerate(rng.sample(combos, n)):
        context = g["context"].format(n=name, c=city, j=job, h=hobby)
        question, slot = g["questions"][k % 3]
        answer = {"c": city, "j": job, "h": hobby}[slot]
        rows.append({"id": f"demo-{lang}-{k:04d}", "title": name, "context": context,
                     "question": question.format(n=name),
                     "answers": {"text": [answer], "answer_start": [context.index(answer)]}})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    for lang in ("en", "fr", "es", "zh"):
        write_jsonl(HERE / "sentiment" / f"{lang}.jsonl", sentiment_rows(lang, random.Random(f"{SEED}-s-{lang}")))
        write_jsonl(HERE / "topic" / f"{lang}.jsonl", topic_rows(lang, random.Random(f"{SEED}-t-{lang}")))
    for lang in ("fr", "es", "zh"):
        write_jsonl(HERE / "translation" / f"en-{lang}.jsonl",
                    translation_rows(lang, random.Random(f"{SEED}-m-{lang}")))
    for lang in ("en", "fr"):
        write_jsonl(HERE / "qa" / f"{lang}.jsonl", qa_rows(lang, random.Random(f"{SEED}-q-{lang}")))


if __name__ == "__main__":
    main()
