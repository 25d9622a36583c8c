"""The simulated marketplace's world knowledge: category tree, product types, words.

Every product type has the names a *shop* uses in titles and the names a *shopper*
uses in queries. The two lists overlap only partly, and each type has at least one
query name sharing no word with any of its title names ('trainers for jogging' vs
'running shoe'), so lexical matching alone cannot find every relevant item.
Brands are invented.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProductType:
    name: str
    title_names: tuple[str, ...]
    query_names: tuple[str, ...]
    features: tuple[str, ...]
    price: float  # median price in the shop's currency


@dataclass(frozen=True)
class TopCategory:
    name: str
    brands: tuple[str, ...]
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...]  # empty: the category has no sizes
    subcategories: dict[str, tuple[ProductType, ...]]


P = ProductType
CLOTHING_SIZES = ("XS", "S", "M", "L", "XL")
SHOE_SIZES = ("6", "7", "8", "9", "10", "11", "12")

CATALOG_TREE: tuple[TopCategory, ...] = (
    TopCategory(
        "Shoes",
        ("Stridex", "Northpeak", "Velora", "Kinetiq", "Trailborn", "Urbanfoot"),
        ("black", "white", "grey", "blue", "red", "green", "pink"),
        ("mesh", "leather", "suede", "canvas", "synthetic"),
        SHOE_SIZES,
        {
            "Athletic Shoes": (
                P(
                    "running shoe",
                    ("running shoe", "road running shoe", "running sneaker"),
                    ("running shoes", "trainers for jogging", "jogging trainers", "runners"),
                    ("lightweight", "cushioned", "breathable", "reflective"),
                    90,
                ),
                P(
                    "trail shoe",
                    ("trail running shoe", "trail shoe", "off-road runner"),
                    ("trail shoes", "hiking trainers", "shoes for mountain paths"),
                    ("waterproof", "grippy", "cushioned", "lightweight"),
                    110,
                ),
            ),
            "Boots": (
                P(
                    "hiking boot",
                    ("hiking boot", "trekking boot", "mountain boot"),
                    ("hiking boots", "walking boots for hills", "hillwalking footwear"),
                    ("waterproof", "insulated", "ankle support", "grippy"),
                    140,
                ),
                P(
                    "chelsea boot",
                    ("chelsea boot", "ankle boot", "pull-on boot"),
                    ("chelsea boots", "slip on booties", "elastic sided footwear"),
                    ("elastic sides", "stacked heel", "water resistant"),
                    120,
                ),
            ),
        },
    ),
    TopCategory(
        "Clothing",
        ("Loomcraft", "Threadline", "Polarwave", "Everknit", "Mossgrove", "Cityweave"),
        ("black", "white", "navy", "grey", "olive", "beige", "red"),
        ("cotton", "wool", "polyester", "linen", "fleece"),
        CLOTHING_SIZES,
        {
            "Outerwear": (
                P(
                    "rain jacket",
                    ("rain jacket", "waterproof shell", "rain shell jacket"),
                    ("rain jackets", "raincoat", "coat for wet weather", "anorak"),
                    ("hooded", "packable", "breathable", "taped seams"),
                    95,
                ),
                P(
                    "puffer jacket",
                    ("puffer jacket", "down jacket", "quilted jacket"),
                    ("puffer coats", "winter parka", "padded coat"),
                    ("hooded", "insulated", "packable", "water resistant"),
                    130,
                ),
            ),
            "Tops": (
                P(
                    "t-shirt",
                    ("t-shirt", "crew neck tee", "short sleeve tee"),
                    ("t shirts", "tee shirt", "basic top"),
                    ("organic", "slim fit", "relaxed fit", "moisture wicking"),
                    20,
                ),
                P(
                    "hoodie",
                    ("hoodie", "hooded sweatshirt", "pullover hoodie"),
                    ("hoodies", "hooded jumper", "sweater with hood"),
                    ("kangaroo pocket", "brushed inside", "relaxed fit", "zip up"),
                    45,
                ),
            ),
        },
    ),
    TopCategory(
        "Electronics",
        ("Sonique", "Voltara", "Pixelon", "Auralink", "Nexbyte", "Quantix"),
        ("black", "white", "silver", "blue", "rose gold"),
        ("plastic", "aluminium", "silicone", "glass"),
        (),
        {
            "Audio": (
                P(
                    "wireless earbuds",
                    ("wireless earbuds", "true wireless earphones", "bluetooth earbuds"),
                    ("earbuds", "cordless in-ear headphones", "airpods alternative", "tws buds"),
                    ("noise cancelling", "water resistant", "long battery", "fast charging"),
                    60,
                ),
                P(
                    "over-ear headphones",
                    ("over-ear headphones", "wireless headphones", "closed-back headphones"),
                    ("headphones", "cans for music", "studio headset"),
                    ("noise cancelling", "foldable", "long battery", "hi-res audio"),
                    120,
                ),
            ),
            "Computing": (
                P(
                    "laptop",
                    ("laptop", "notebook computer", "ultrabook"),
                    ("laptops", "portable pc", "computer for students", "macbook alternative"),
                    ("16gb ram", "ssd storage", "backlit keyboard", "long battery"),
                    800,
                ),
                P(
                    "computer mouse",
                    ("wireless mouse", "optical mouse", "ergonomic mouse"),
                    ("mouse", "pointing device", "clicker for pc"),
                    ("silent clicks", "rechargeable", "bluetooth", "ergonomic"),
                    25,
                ),
            ),
        },
    ),
    TopCategory(
        "Home & Kitchen",
        ("Hearthly", "Cuisora", "Brewmont", "Nestwell", "Oakhaven", "Kitchora"),
        ("black", "white", "silver", "red", "cream", "green"),
        ("stainless steel", "ceramic", "cast iron", "glass", "bamboo"),
        (),
        {
            "Cookware": (
                P(
                    "frying pan",
                    ("frying pan", "non-stick skillet", "fry pan"),
                    ("frying pans", "pan for eggs", "omelette pan", "griddle pan"),
                    ("non-stick", "induction ready", "oven safe", "dishwasher safe"),
                    35,
                ),
                P(
                    "dutch oven",
                    ("dutch oven", "casserole pot", "enamelled cocotte"),
                    ("dutch ovens", "pot for stews", "slow cooking pot"),
                    ("enamelled", "oven safe", "induction ready", "lid included"),
                    80,
                ),
            ),
            "Coffee": (
                P(
                    "espresso machine",
                    ("espresso machine", "espresso maker", "coffee machine"),
                    ("espresso machines", "barista at home", "cappuccino maker"),
                    ("milk frother", "15 bar pump", "programmable", "compact"),
                    250,
                ),
                P(
                    "coffee grinder",
                    ("coffee grinder", "burr grinder", "bean grinder"),
                    ("coffee grinders", "mill for beans", "grind beans at home"),
                    ("burr", "adjustable grind", "quiet", "compact"),
                    60,
                ),
            ),
        },
    ),
    TopCategory(
        "Sports & Outdoors",
        ("Summitra", "Campfirely", "Ridgeline", "Aquaflow", "Pedalon", "Peakform"),
        ("black", "blue", "green", "orange", "grey", "yellow"),
        ("nylon", "polyester", "aluminium", "carbon", "rubber"),
        (),
        {
            "Camping": (
                P(
                    "tent",
                    ("tent", "dome tent", "backpacking tent"),
                    ("tents", "shelter for camping", "camping shelter"),
                    ("2 person", "4 person", "waterproof", "lightweight"),
                    150,
                ),
                P(
                    "sleeping bag",
                    ("sleeping bag", "mummy bag", "camping sleeping bag"),
                    ("sleeping bags", "bedroll", "sleep sack"),
                    ("3 season", "compressible", "insulated", "lightweight"),
                    70,
                ),
            ),
            "Fitness": (
                P(
                    "yoga mat",
                    ("yoga mat", "exercise mat", "non-slip mat"),
                    ("yoga mats", "pilates pad", "floor workout pad"),
                    ("non-slip", "extra thick", "carry strap", "eco friendly"),
                    30,
                ),
                P(
                    "dumbbell set",
                    ("dumbbell set", "adjustable dumbbells", "hand weights"),
                    ("dumbbells", "free weights for home", "weights for home gym"),
                    ("adjustable", "rubber coated", "stand included", "hex"),
                    90,
                ),
            ),
        },
    ),
    TopCategory(
        "Beauty",
        ("Glowra", "Purelle", "Dermique", "Silkara", "Botanix", "Lumenea"),
        ("clear", "white", "pink", "gold"),
        ("plant based", "mineral", "fragrance free", "organic"),
        (),
        {
            "Skincare": (
                P(
                    "moisturiser",
                    ("moisturiser", "face cream", "hydrating cream"),
                    ("moisturizer", "lotion for dry skin", "facial hydration"),
                    ("spf 30", "hyaluronic acid", "for sensitive skin", "oil free"),
                    25,
                ),
                P(
                    "sunscreen",
                    ("sunscreen", "sun cream", "spf lotion"),
                    ("sunblock", "uv protection for face", "sun protection"),
                    ("spf 50", "water resistant", "mineral", "for sensitive skin"),
                    18,
                ),
            ),
            "Hair": (
                P(
                    "hair dryer",
                    ("hair dryer", "ionic hairdryer", "blow dryer"),
                    ("hairdryer", "blowdryer", "hair blower"),
                    ("ionic", "diffuser", "foldable", "cool shot"),
                    55,
                ),
                P(
                    "shampoo",
                    ("shampoo", "cleansing shampoo", "hair wash"),
                    ("shampoos", "cleanser for hair", "dandruff treatment"),
                    ("sulfate free", "for curly hair", "anti dandruff", "volumising"),
                    12,
                ),
            ),
        },
    ),
)

# query templates per intent; {pt} is a query name of the product type
QUERY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "buy": (
        "{colour} {pt}",
        "{brand} {pt}",
        "{pt} {feature}",
        "{colour} {material} {pt}",
        "{feature} {pt} size {size}",
        "{brand} {colour} {pt}",
        "{pt} in {colour}",
    ),
    "browse": ("{pt}", "{subcategory}", "new {subcategory}", "{pt} ideas", "{category}"),
    "compare": ("best {pt}", "{brand} vs {brand2} {pt}", "top rated {pt}", "{pt} comparison"),
    "price": ("cheap {pt}", "{pt} under {price}", "affordable {pt}", "{pt} deals", "budget {pt}"),
    "learn": ("how to choose {pt}", "{pt} buying guide", "what {pt} do i need", "how to clean {pt}"),
}

# which attributes the shopper insists on, by template slot
ATTRIBUTE_SLOTS = ("colour", "material", "feature", "size", "brand")

TITLE_TEMPLATES = (
    "{brand} {model} {pt}",
    "{brand} {model} {pt} - {colour}",
    "{brand} {pt} {feature} {colour}",
    "{colour} {material} {pt} by {brand}",
    "{brand} {model} {feature} {pt}, {material}",
    "{pt} {model} | {brand} | {colour}",
)

DESCRIPTION_SENTENCES = (
    "This {pt} from {brand} is made of {material}.",
    "A {feature} {pt} in {colour} for everyday use.",
    "Designed for comfort and durability, the {model} is a dependable choice.",
    "Finished in {colour} with {material} details.",
    "Key feature: {feature}.",
    "Customers love the {model} for its value and build quality.",
    "Our {model} {pt} comes with a two year warranty.",
)

MODEL_WORDS = (
    "Aero",
    "Pulse",
    "Nova",
    "Core",
    "Flux",
    "Zen",
    "Apex",
    "Echo",
    "Orbit",
    "Swift",
    "Terra",
    "Vista",
    "Halo",
    "Prime",
    "Edge",
    "Drift",
    "Glide",
    "Ember",
    "Luma",
    "Peak",
)

REGIONS = ("north", "south", "east", "west", "central")
DEVICES = ("mobile", "desktop", "app")
