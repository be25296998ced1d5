"""A deterministic demo catalog: categories with subcategories, brands, a few hundred
products with 1-3 variants, some discounts and featured flags."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal

from sqlalchemy import func, select

from ultramarket.core.container import Container
from ultramarket.services.product.models import Product
from ultramarket.services.product.repository import CACHE_PREFIX, CATEGORY_CACHE_PREFIX
from ultramarket.services.product.schemas import VariantIn
from ultramarket.services.product.service import CategoryService, ProductService

# category -> (subcategories, brands, nouns, (min, max) price, option name, option values)
CATALOG: dict[str, tuple[list[str], list[str], list[str], tuple[int, int], str, list[str]]] = {
    "Electronics": (
        ["Phones", "Laptops", "Audio", "Cameras"],
        ["Voltra", "Nimbus", "Kestrel", "Orion"],
        ["Smartphone", "Ultrabook", "Headphones", "Earbuds", "Mirrorless Camera", "Speaker"],
        (29, 1899),
        "color",
        ["Black", "Silver", "Blue"],
    ),
    "Fashion": (
        ["Men", "Women", "Shoes", "Accessories"],
        ["Northway", "Lumen", "Atelier Rue", "Basecamp"],
        ["T-Shirt", "Jeans", "Sneakers", "Jacket", "Dress", "Belt", "Scarf"],
        (12, 249),
        "size",
        ["S", "M", "L", "XL"],
    ),
    "Home & Kitchen": (
        ["Cookware", "Furniture", "Bedding"],
        ["Hearth", "Oakline", "Casa Verde"],
        ["Skillet", "Dutch Oven", "Armchair", "Duvet", "Knife Set", "Coffee Table"],
        (15, 899),
        "finish",
        ["Natural", "Walnut", "White"],
    ),
    "Sports & Outdoors": (
        ["Camping", "Cycling", "Fitness"],
        ["Summit", "Ridgeback", "Pulse"],
        ["Tent", "Sleeping Bag", "Road Bike Helmet", "Yoga Mat", "Dumbbell Set", "Backpack"],
        (9, 1299),
        "size",
        ["S", "M", "L"],
    ),
    "Beauty": (
        ["Skincare", "Fragrance", "Hair"],
        ["Aurelle", "Pure Leaf", "Maison Blanc"],
        ["Face Serum", "Moisturiser", "Eau de Parfum", "Shampoo", "Hair Oil"],
        (7, 159),
        "volume",
        ["30 ml", "50 ml", "100 ml"],
    ),
    "Books": (
        ["Fiction", "Non-fiction", "Children"],
        ["Penrose Press", "Blue Owl", "Harbor Books"],
        ["Novel", "Biography", "Cookbook", "Picture Book", "Field Guide"],
        (6, 59),
        "format",
        ["Paperback", "Hardcover"],
    ),
    "Toys & Games": (
        ["Board Games", "Puzzles", "Building Sets"],
        ["Playwell", "Brickton", "Meeple Co"],
        ["Strategy Game", "Jigsaw Puzzle", "Building Kit", "Card Game"],
        (8, 199),
        "edition",
        ["Standard", "Deluxe"],
    ),
    "Grocery": (
        ["Coffee & Tea", "Snacks", "Pantry"],
        ["Roastery 9", "Green Valley", "Nonna's"],
        ["Coffee Beans", "Green Tea", "Dark Chocolate", "Olive Oil", "Pasta"],
        (3, 49),
        "size",
        ["250 g", "500 g", "1 kg"],
    ),
}
ADJECTIVES = ["Classic", "Pro", "Essential", "Premium", "Lite", "Everyday", "Signature", "Eco"]


async def seed_catalog(container: Container, count: int = 300) -> list[uuid.UUID]:
    """Create the demo catalog (about ``count`` products); returns the product ids."""
    rng = random.Random(20261121)  # noqa: S311 - demo data, not security
    ids: list[uuid.UUID] = []
    async with container.db("product").session() as session:
        categories = CategoryService(session)
        products = ProductService(session, publisher=container.publisher("product"))
        leaves: list[tuple[uuid.UUID, str]] = []
        for position, (name, spec) in enumerate(CATALOG.items()):
            root = await categories.create({"name": name, "position": position})
            for sub_position, sub in enumerate(spec[0]):
                child = await categories.create(
                    {"name": sub, "parent_id": root.id, "position": sub_position}
                )
                leaves.append((child.id, name))
        for n in range(count):
            category_id, root_name = leaves[n % len(leaves)]
            _, brands, nouns, (low, high), option, values = CATALOG[root_name]
            brand = rng.choice(brands)
            name = f"{brand} {rng.choice(ADJECTIVES)} {rng.choice(nouns)} {rng.randint(1, 99)}"
            base = Decimal(rng.randint(low * 100, high * 100)) / 100
            variants = []
            for i, value in enumerate(rng.sample(values, rng.randint(1, min(3, len(values))))):
                price = base + Decimal(i * 5)
                compare_at = (price * Decimal("1.25")).quantize(Decimal("0.01"))
                variants.append(
                    VariantIn(
                        sku=f"DEMO-{n:04d}-{i}",
                        options={option: value},
                        price=price,
                        compare_at_price=compare_at if rng.random() < 0.2 else None,
                        currency="USD",
                        weight_grams=rng.randint(50, 5000),
                    )
                )
            product = await products.create(
                {
                    "name": name,
                    "description": f"The {name}: a demo product in {root_name}.",
                    "brand": brand,
                    "category_id": category_id,
                    "attributes": {option: variants[0].options[option]},
                    "status": "active" if rng.random() < 0.95 else "draft",
                    "featured": rng.random() < 0.08,
                    "seo_title": name,
                    "seo_description": f"Buy the {name} at UltraMarket.",
                    "variants": variants,
                }
            )
            product.rating = round(rng.uniform(3.0, 5.0), 1)
            product.review_count = rng.randint(0, 400)
            product.sales_count = rng.randint(0, 2000)
            ids.append(product.id)
    await container.cache.invalidate_prefix(CACHE_PREFIX)
    await container.cache.invalidate_prefix(CATEGORY_CACHE_PREFIX)
    return ids


async def catalog_size(container: Container) -> int:
    async with container.db("product").read_session() as session:
        return int(await session.scalar(select(func.count()).select_from(Product)) or 0)
