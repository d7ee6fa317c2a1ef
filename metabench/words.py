"""Word lists shared by the filler generator and the tasks.

Two vocabularies are kept disjoint on purpose: `FILLER_*` words build the
haystack, `KEY_WORDS` name needles, lists and keys. A needle keyed by a word
from `KEY_WORDS` therefore never occurs by accident in procedural filler, and
filler contains no digits, so numeric values are unique too.
"""


def _split(text: str) -> tuple[str, ...]:
    words = tuple(text.split())
    assert len(set(words)) == len(words), "duplicate word in a list"
    return words


FILLER_NOUNS = _split("""
river mountain village garden window letter teacher farmer market bridge forest
harbor lantern kitchen library meadow orchard painter sailor station valley
castle candle basket blanket bottle button carpet ceiling chimney cottage
curtain desk doorway engine fence field fountain hallway hammer helmet island
journal kettle ladder lamp map mirror needlework notebook ocean palace pencil
pillow pocket puzzle quilt railway ribbon roof saddle scarf shelf shovel
sketch staircase stove street table theater tower tunnel umbrella wagon wall
wheel workshop attic balcony barn beach cabin canyon cellar cliff coast desert
gate hill lake pond road shore stream swamp trail path neighbor merchant
baker doctor student traveler musician gardener shepherd captain clerk
carpenter fisherman weaver poet scholar stranger pilgrim miner builder
""")

FILLER_ADJECTIVES = _split("""
quiet old bright narrow wide gentle distant heavy small ancient busy calm
careful cheerful cold crowded curious dark dusty early empty faded famous
fresh friendly golden green grey hidden honest humble late lively lonely
loud modest muddy patient plain polished proud rapid rough rusty sandy
silent simple sleepy slow smooth soft steady strange sturdy sunny tall
tidy tired warm weary wild windy wooden young brave clever eager
""")

FILLER_VERBS_PAST = _split("""
crossed visited painted repaired cleaned watched followed opened closed
carried described admired noticed measured finished started remembered
ignored explored climbed passed reached built moved found lost studied
""")

FILLER_VERBS_INTRANSITIVE = _split("""
waited rested wandered laughed listened paused worked slept travelled
smiled whispered hurried lingered returned vanished appeared arrived sang
""")

FILLER_ADVERBS = _split("""
slowly quickly quietly carefully happily patiently briefly gladly rarely
often calmly eagerly gently loudly softly proudly warmly openly
""")

FILLER_TIMES = _split("""
yesterday today tonight afterwards meanwhile eventually recently lately
""")

FILLER_TIME_PHRASES = (
    "in the morning", "at dawn", "before noon", "after supper", "during the storm",
    "at the end of the season", "on a cold evening", "late at night", "in early spring",
    "every winter", "once a week", "long ago", "after the harvest", "before the festival",
)

FILLER_NAMES = _split("""
Ada Bruno Clara Dmitri Elena Felix Greta Hugo Iris Jonas Klara Leon Mira
Nora Oscar Paula Quentin Rosa Simon Tessa Ulrich Vera Walter Yara Zeno
Agnes Boris Celia Dario Edith Frida Gustav Helga Ivan Julia
""")

FILLER_PREPOSITIONS = _split("across near behind beside beyond toward under past around along")

FILLER_NUMBER_WORDS = _split("two three four five several many few dozens")

# Words for keys, list names and needles: disjoint from every FILLER_* list.
KEY_WORDS = _split("""
amber azure cobalt crimson indigo ivory jade magenta ochre onyx scarlet sepia
teal umber violet walnut saffron cerulean vermilion topaz garnet quartz opal
zircon basalt granite marble cobble flint slate pumice obsidian graphite
falcon heron osprey pelican condor kestrel magpie raven sparrow swallow
walrus otter badger beaver bison cougar coyote ferret gecko hyena jackal
lemur lynx marmot moose narwhal ocelot panda puma tapir yak zebra
apricot avocado banana cherry coconut durian fig grape guava kiwi lemon
lychee mango melon nectarine olive papaya peach pear plum quince raisin
anchor anvil banjo bugle cactus compass cymbal dagger easel flute gong
harp kazoo lute mallet oboe piano rudder sextant sickle tuba violin whistle
acorn blizzard comet cyclone eclipse glacier geyser lagoon meteor monsoon
nebula oasis prairie quasar savanna tundra volcano zephyr aurora canyonland
""")

# Items for lists, counting and copying: also disjoint from the filler lists.
ITEM_WORDS = KEY_WORDS

COUNT_ITEMS = _split("cat dog owl fox bee ant cow pig hen elk")


# Made-up words for the word-frequency tasks: consonant-vowel syllables, three to
# a word, so every word has six letters and none is a substring of another. A
# fixed seeded selection, in a fixed shuffled order.
_CONSONANTS = "bdfghjklmnprstvz"
_VOWELS = "aeiou"
COINED_SEED = 20240408  # RULER's arXiv month; any constant would do, changing it changes every sample
COINED_SIZE = 32768


def _coined(index: int) -> str:
    out = []
    for _ in range(3):
        index, s = divmod(index, len(_CONSONANTS) * len(_VOWELS))
        out.append(_CONSONANTS[s // len(_VOWELS)] + _VOWELS[s % len(_VOWELS)])
    return "".join(out)


def coined_words() -> tuple[str, ...]:
    """`COINED_SIZE` distinct six-letter made-up words (of 512,000 possible), in a fixed order."""
    import random

    total = (len(_CONSONANTS) * len(_VOWELS)) ** 3
    return tuple(_coined(i) for i in random.Random(COINED_SEED).sample(range(total), COINED_SIZE))

# RULER's "noise" haystack: these five sentences, repeated.
NOISE_SENTENCES = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
