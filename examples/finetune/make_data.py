"""Generate the fine-tuning data: weather questions answered with a tool call, other questions
answered in plain text, in the ``conversations`` + ``tools`` + ``loss`` record kind.

Writes (deterministic for a given seed)::

    OUT/train.jsonl    training records (one to three question/answer exchanges each)
    OUT/eval.jsonl     records of the same kind on held-out cities, countries and phrasings (eval loss)
    OUT/heldout.json   held-out single questions with what a right answer is (a call and its city, or text)
    OUT/tools.json     the tool list offered in every conversation (for ``chatfmt chat --tools``)

A weather exchange is a ``tool`` message with ``name``/``parameters``/``observation`` (chatfmt expands it
into the assistant's call and the tool's result) followed by the assistant's answer from the result.
Some records turn training off for their first answer with ``"loss": false``. Held-out cities,
countries and question phrasings never occur in the training records.

    python examples/finetune/make_data.py OUT [--records 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = "You are a helpful assistant."

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]

# city -> country; the held-out ones never appear in training records
TRAIN_CITIES = {
    "Paris": "France", "Berlin": "Germany", "Madrid": "Spain", "Rome": "Italy", "Lisbon": "Portugal",
    "Vienna": "Austria", "Warsaw": "Poland", "Prague": "Czechia", "Dublin": "Ireland", "London": "the United Kingdom",
    "Amsterdam": "the Netherlands", "Brussels": "Belgium", "Stockholm": "Sweden", "Helsinki": "Finland",
    "Athens": "Greece", "Istanbul": "Turkey", "Cairo": "Egypt", "Nairobi": "Kenya", "Lagos": "Nigeria",
    "Tokyo": "Japan", "Seoul": "South Korea", "Beijing": "China", "Shanghai": "China", "Mumbai": "India",
    "Delhi": "India", "Bangkok": "Thailand", "Jakarta": "Indonesia", "Manila": "the Philippines",
    "Sydney": "Australia", "Melbourne": "Australia", "Auckland": "New Zealand", "Toronto": "Canada",
    "Vancouver": "Canada", "Chicago": "the United States", "New York": "the United States",
    "Los Angeles": "the United States", "Mexico City": "Mexico", "Lima": "Peru", "Bogota": "Colombia",
    "Buenos Aires": "Argentina", "Santiago": "Chile", "Cape Town": "South Africa", "Munich": "Germany",
    "Barcelona": "Spain", "Milan": "Italy", "Zurich": "Switzerland",
}
HELDOUT_CITIES = {
    "Oslo": "Norway", "Copenhagen": "Denmark", "Budapest": "Hungary", "Hanoi": "Vietnam",
    "Osaka": "Japan", "Montreal": "Canada", "San Francisco": "the United States", "Rio de Janeiro": "Brazil",
    "Casablanca": "Morocco", "Singapore": "Singapore", "Edinburgh": "the United Kingdom", "Kyiv": "Ukraine",
}

# country -> capital, for plain questions (held-out countries never appear in training)
TRAIN_CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Spain": "Madrid", "Italy": "Rome", "Japan": "Tokyo",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Greece": "Athens", "Austria": "Vienna",
    "Poland": "Warsaw", "Ireland": "Dublin", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Portugal": "Lisbon", "Thailand": "Bangkok", "Chile": "Santiago", "Argentina": "Buenos Aires",
    "Mexico": "Mexico City", "Canada": "Ottawa", "Australia": "Canberra", "China": "Beijing",
}
HELDOUT_CAPITALS = {"Norway": "Oslo", "Denmark": "Copenhagen", "Hungary": "Budapest", "Vietnam": "Hanoi"}

TRAIN_WEATHER = [
    "What's the weather in {city}?",
    "What is the weather like in {city} today?",
    "How's the weather in {city}?",
    "Is it raining in {city}?",
    "Do I need an umbrella in {city} today?",
    "Tell me the current weather in {city}.",
    "How warm is it in {city} right now?",
    "What's the temperature in {city}?",
    "Weather in {city}, please.",
    "Is it sunny in {city} at the moment?",
    "I'm heading to {city}. What's the weather there?",
    "Can you check the weather for {city}?",
]
HELDOUT_WEATHER = [
    "Could you look up today's weather in {city}?",
    "Is it cold in {city} now?",
    "What are the weather conditions in {city}?",
    "Check the forecast for {city} for me.",
]

SKIES = ["sunny", "cloudy", "rainy", "windy", "foggy", "snowing", "partly cloudy", "clear"]
ANSWERS = [
    "It is {t} °C and {sky} in {city}.",
    "Right now {city} is {sky} at {t} °C.",
    "{city}: {sky}, {t} °C.",
]

# plain questions with their answers (no tool): general knowledge kept simple
TRAIN_FACTS = [
    ("How many days are in a week?", "There are 7 days in a week."),
    ("How many minutes are in an hour?", "There are 60 minutes in an hour."),
    ("What colour is the sky on a clear day?", "On a clear day the sky is blue."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("How many legs does a spider have?", "A spider has 8 legs."),
    ("What do bees make?", "Bees make honey."),
    ("Which planet do we live on?", "We live on Earth."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Say hello in Spanish.", "Hola!"),
    ("Give me a synonym for happy.", "Glad."),
    ("What is the first letter of the alphabet?", "The first letter of the alphabet is A."),
    ("How many months are in a year?", "There are 12 months in a year."),
]
HELDOUT_FACTS = [
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("What is the opposite of up?", "The opposite of up is down."),
]


def _weather_turns(rng: random.Random, city: str, phrasings: list[str]) -> list[dict]:
    t, sky = rng.randint(-5, 35), rng.choice(SKIES)
    return [
        {"role": "user", "content": rng.choice(phrasings).format(city=city)},
        {"role": "tool", "name": "get_weather", "parameters": {"city": city}, "observation": {"temp_c": t, "sky": sky}},
        {"role": "assistant", "content": rng.choice(ANSWERS).format(t=t, sky=sky, city=city)},
    ]


def _plain_turns(rng: random.Random, cities: dict, capitals: dict, facts: list) -> list[dict]:
    kind = rng.choice(["sum", "product", "capital", "country", "fact"])
    if kind == "sum":
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        q, r = rng.choice(["What is {a} + {b}?", "Add {a} and {b}."]).format(a=a, b=b), f"{a} + {b} = {a + b}."
    elif kind == "product":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        q, r = f"What is {a} times {b}?", f"{a} times {b} is {a * b}."
    elif kind == "capital":
        country = rng.choice(sorted(capitals))
        q, r = f"What is the capital of {country}?", f"The capital of {country} is {capitals[country]}."
    elif kind == "country":  # a city in the question, but no weather: no tool call
        city = rng.choice(sorted(cities))
        q, r = rng.choice(["Which country is {c} in?", "In which country is {c}?"]).format(c=city), f"{city} is in {cities[city]}."
    else:
        q, r = rng.choice(facts)
    return [{"role": "user", "content": q}, {"role": "assistant", "content": r}]


def make_record(rng: random.Random, cities: dict, capitals: dict, phrasings: list[str], facts: list) -> dict:
    """One conversation of one to three exchanges, about half of them weather questions."""
    conversations: list[dict] = [{"role": "system", "content": SYSTEM}]
    for i in range(rng.choice([1, 1, 2, 3])):
        if rng.random() < 0.5:
            conversations += _weather_turns(rng, rng.choice(sorted(cities)), phrasings)
        else:
            conversations += _plain_turns(rng, cities, capitals, facts)
        if i == 0 and len(conversations) > 3 and rng.random() < 0.15:
            conversations[-1]["loss"] = False  # an earlier answer kept as context, not trained
    return {"conversations": conversations, "tools": TOOLS}


def heldout_prompts(rng: random.Random) -> list[dict]:
    """Single questions on held-out cities, countries and phrasings: ``expect`` is the city the call
    must name, or ``None`` for a question to answer in text."""
    cities = sorted(HELDOUT_CITIES)
    out = []
    for i, city in enumerate(cities):
        out.append({"question": HELDOUT_WEATHER[i % len(HELDOUT_WEATHER)].format(city=city), "expect": city})
    plain = [f"What is the capital of {c}?" for c in sorted(HELDOUT_CAPITALS)]
    plain += [f"Which country is {c} in?" for c in cities[:3]]
    plain += [q for q, _ in HELDOUT_FACTS]
    plain += [f"What is {a} + {b}?" for a, b in ((rng.randint(61, 99), rng.randint(61, 99)) for _ in range(3))]
    out += [{"question": q, "expect": None} for q in plain]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--records", type=int, default=300, help="training records (default 300)")
    ap.add_argument("--eval-records", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    write(a.out, records=a.records, eval_records=a.eval_records, seed=a.seed)


def write(out: Path, *, records: int = 300, eval_records: int = 24, seed: int = 0) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train = [make_record(rng, TRAIN_CITIES, TRAIN_CAPITALS, TRAIN_WEATHER, TRAIN_FACTS) for _ in range(records)]
    evals = [make_record(rng, HELDOUT_CITIES, HELDOUT_CAPITALS, HELDOUT_WEATHER, HELDOUT_FACTS) for _ in range(eval_records)]
    paths = {name: out / name for name in ("train.jsonl", "eval.jsonl", "heldout.json", "tools.json")}
    for name, rows in (("train.jsonl", train), ("eval.jsonl", evals)):
        paths[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    paths["heldout.json"].write_text(json.dumps(heldout_prompts(random.Random(seed + 1)), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    paths["tools.json"].write_text(json.dumps(TOOLS, indent=1) + "\n", encoding="utf-8")
    return paths


if __name__ == "__main__":
    main()
