"""Word lists the demo data generators draw names from."""

from __future__ import annotations

FIRST_NAMES = {
    "en": ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
           "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Carlos", "Karen",
           "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Betty", "Mark", "Sandra", "Jose", "Ashley"),
    "de": ("Lukas", "Anna", "Leon", "Lena", "Finn", "Mia", "Jonas", "Emma", "Paul", "Hannah", "Felix", "Sophie",
           "Maximilian", "Lea", "Ben", "Marie", "Elias", "Laura", "Noah", "Katharina", "Julian", "Johanna",
           "Moritz", "Clara", "Tim", "Greta", "Jan", "Frieda", "Tobias", "Ida"),
}
LAST_NAMES = {
    "en": ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
           "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
           "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King"),
    "de": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
           "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
           "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Meier", "Lehmann"),
}
ADJECTIVES = ("Classic", "Urban", "Alpine", "Coastal", "Vintage", "Modern", "Rugged", "Silk", "Cotton", "Wool",
              "Leather", "Canvas", "Denim", "Linen", "Merino", "Trail", "Summit", "Harbor", "Prairie", "Metro")
NOUNS = ("Jacket", "Shirt", "Jeans", "Sweater", "Boots", "Sneakers", "Scarf", "Hat", "Backpack", "Belt",
         "Dress", "Skirt", "Hoodie", "Vest", "Gloves", "Socks", "Watch", "Sunglasses", "Wallet", "Tote")
VARIANTS = ("S", "M", "L", "XL", "Black", "Navy", "Olive", "Sand", "Grey", "Red")
PROMOTIONS = ("Spring sale", "Summer clearance", "Back to school", "Black Friday", "Holiday gifts",
              "Loyalty bonus", "Buy more save more", "Weekend deal", "Outlet week", "New season")
