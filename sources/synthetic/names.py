"""Name pools for the synthetic city: English first names and surnames with the mix a
UK city has, accented names (most survive Windows-1252, a few do not) and the nickname
forms people give to a MASH worker or an early help practitioner.

The generator's nickname list is its own: identity standardisation keeps a separate
table, so evaluation is not flattered by sharing one list.
"""

from __future__ import annotations

FEMALE = """Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Freya Willow
Florence Emily Ella Poppy Evie Elsie Charlotte Evelyn Sienna Sofia Daisy Phoebe Alice
Sophie Harper Matilda Ruby Emilia Maya Millie Isabelle Eva Luna Jessica Ada Arabella
Maisie Esme Eliza Penelope Chloe Violet Hallie Layla Aria Mila Erin Emma Harriet Lucy
Hannah Ellie Jasmine Amber Holly Megan Lauren Abigail Zara Aisha Fatima Maryam Zainab
Amira Hafsa Khadija Inaaya Anaya Priya Simran Jaspreet Chanel Shanice Tiana Precious
Blessing Chidinma Amara Nia Keira Courtney Jade Leah Niamh Aoife Ciara Roisin Kayleigh
Tegan Demi Paige Chelsea Bethany Rebecca Katie Natalie Samantha Victoria Elizabeth
Katherine Margaret Susan Deborah Julie Karen Michelle Nicola Joanne Sarah Rachel Kelly
Donna Stacey Gemma Zoe Agnieszka Zuzanna Wiktoria Natalia Oliwia Julia Antonia Gabriela
Sara Alina Daria Ioana Andreea Elena Maria Ana Iqra Hira Sana Mariam Rukhsana Shabana""".split()

MALE = """Noah Oliver George Arthur Muhammad Leo Harry Oscar Archie Henry Theodore Freddie
Jack Charlie Theo Alfie Jacob Thomas Finley Arlo William Lucas Roman Tommy Isaac Teddy
Alexander Luca Edward James Joshua Albie Elijah Max Mohammed Reggie Hudson Sebastian
Ethan Mason Jude Rory Louie Benjamin Daniel Samuel Joseph Dylan Harrison Jaxon Riley
Toby Caleb Logan Kai Tyler Jayden Kyle Callum Connor Liam Ryan Kieran Lewis Jordan Bradley
Aaron Adam Ben Luke Matthew Michael David Christopher Robert Richard Anthony Stephen Paul
Mark Andrew Peter John Steven Gary Darren Lee Craig Wayne Dean Jason Ibrahim Yusuf Omar
Ali Hamza Zayn Ayaan Arjun Rohan Harpreet Gurpreet Ravi Kwame Kofi Chinedu Emeka Tobi
Jermaine Tyrone Marcus Andre Darnell Kacper Jakub Szymon Filip Mateusz Wojciech Bartosz
Antoni Mihai Andrei Stefan Ionut Florin Cian Oisin Padraig Declan Eoin Bilal Imran Tariq
Usman Asif Kamran Rizwan Shahid Faisal Hassan Hussain Abdullah Idris""".split()

SURNAMES = """Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Robinson Wright
Thompson Evans Walker White Roberts Green Hall Thomas Clarke Jackson Wood Harris Edwards
Turner Martin Cooper Hill Ward Hughes Moore Clark King Harrison Lewis Baker Lee Allen
Morris Khan Scott Watson Davis Parker James Bennett Young Phillips Richardson Mitchell
Bailey Carter Cook Singh Shaw Bell Collins Morgan Kelly Begum Miller Cox Hussain Marshall
Simpson Price Anderson Adams Wilkinson Ali Ahmed Foster Ellis Murphy Chapman Mason Gray
Richards Webb Griffiths Hunt Palmer Campbell Holmes Mills Barnes Knight Matthews Barker
Powell Stevens Kaur Fisher Butler Dixon Russell Harvey Pearson Graham Fletcher Howard
Hussein Rahman Akhtar Iqbal Mahmood Chaudhry Sharma Mistry Chauhan Okafor Adeyemi Mensah
Asante Boateng Owusu Nwosu Okonkwo Campbell-Brown Nowak Kowalski Wisniewski Wojcik
Kaminski Lewandowski Zielinski Popescu Ionescu Popa Murray O'Brien O'Connor O'Neill
McCarthy McDonald MacLeod Gallagher Doherty Quinn Byrne Walsh Ryan Sullivan Reid Stewart
Fraser Hamilton Wallace Gordon Kennedy Ferguson Chambers Hopkins Lloyd Rees Jenkins Owen
Parry Powell-Jones Ashworth Brennan Hartley Hargreaves Sutcliffe Pickering Booth Holden
Whitehead Lomax Entwistle Greenwood Haworth Crossley""".split()

# Accented names in the city. The first group encodes in Windows-1252 and must survive
# early help's export intact; the second does not, and the legacy system mangles it.
ACCENTED_FEMALE_CP1252 = ["Zoë", "Chloé", "Renée", "Siân", "Máire", "Aimée", "Inès", "Noémie", "Björk"]
ACCENTED_MALE_CP1252 = ["Seán", "José", "François", "Jérôme", "Ciarán", "Rónán", "Jürgen", "Dáithí"]
ACCENTED_SURNAMES_CP1252 = ["Müller", "García", "Núñez", "Öztürk", "Brontë", "Rodríguez", "Ó Súilleabháin"]
NON_CP1252_FEMALE = ["Łucja", "Małgorzata", "Ş\u0131la", "Ioana-Ştefania"]
NON_CP1252_MALE = ["Łukasz", "Jędrzej", "Mikołaj", "Ştefan"]
NON_CP1252_SURNAMES = ["Dvořák", "Wiśniewska", "Łuczak", "Şahin", "Mickevičius", "Nguyễn"]

NICKNAMES = {
    "William": ["Will", "Bill", "Billy", "Liam"], "Robert": ["Rob", "Bob", "Bobby", "Robbie"],
    "Thomas": ["Tom", "Tommy"], "James": ["Jim", "Jamie", "Jimmy"],
    "Joseph": ["Joe", "Joey"], "Benjamin": ["Ben", "Benji"], "Samuel": ["Sam", "Sammy"],
    "Daniel": ["Dan", "Danny"], "Matthew": ["Matt"], "Michael": ["Mike", "Mikey", "Mick"],
    "Christopher": ["Chris", "Kit"], "Alexander": ["Alex", "Xander", "Sandy"],
    "Edward": ["Ed", "Eddie", "Ted", "Teddy"], "Theodore": ["Theo", "Teddy"],
    "Frederick": ["Fred", "Freddie"], "Joshua": ["Josh"], "Nicholas": ["Nick", "Nicky"],
    "Anthony": ["Tony", "Ant"], "Richard": ["Rich", "Rick", "Dick"], "Stephen": ["Steve"],
    "Steven": ["Steve"], "Andrew": ["Andy", "Drew"], "Jacob": ["Jake"], "Harrison": ["Harry"],
    "Henry": ["Harry", "Hal"], "Archibald": ["Archie"], "Alfred": ["Alfie", "Alf"],
    "Muhammad": ["Mo", "Moh"], "Mohammed": ["Mo"], "Ibrahim": ["Ibby"], "Jakub": ["Kuba"],
    "Olivia": ["Liv", "Livvy"], "Amelia": ["Millie", "Mia", "Amy"], "Isabella": ["Bella", "Izzy"],
    "Isabelle": ["Belle", "Izzy"], "Charlotte": ["Lottie", "Charlie"], "Elizabeth": ["Liz", "Beth", "Lizzie", "Betty"],
    "Katherine": ["Kate", "Katie", "Kath"], "Margaret": ["Maggie", "Peggy", "Meg"],
    "Rebecca": ["Becky", "Becca"], "Samantha": ["Sam", "Sammie"], "Victoria": ["Vicky", "Tori"],
    "Jessica": ["Jess", "Jessie"], "Abigail": ["Abbie", "Abby"], "Florence": ["Flo", "Florrie"],
    "Matilda": ["Tilly", "Tilda"], "Penelope": ["Penny"], "Eleanor": ["Ellie", "Nell"],
    "Harriet": ["Hattie"], "Natalie": ["Nat"], "Gabriela": ["Gaby"], "Wiktoria": ["Wika"],
    "Zuzanna": ["Zuzia"], "Alexandra": ["Alex", "Lexi"], "Evelyn": ["Evie"], "Sophia": ["Sophie"],
    "Jennifer": ["Jen", "Jenny"], "Deborah": ["Debbie", "Deb"], "Susan": ["Sue", "Susie"],
    "Nicola": ["Nicky"], "Daniella": ["Dani"], "Kayleigh": ["Kay"],
}

# Pairs of names parents give twins: the twin guard has to tell these apart.
TWIN_NAME_PAIRS = [
    ("Olivia", "Olive"), ("Jayden", "Jaden"), ("Ella", "Ellie"), ("Isla", "Isabella"),
    ("Mia", "Maya"), ("Lily", "Lola"), ("Harry", "Harvey"), ("Jack", "Jake"),
    ("Aiden", "Aidan"), ("Leo", "Luca"), ("Amelia", "Amelie"), ("Hassan", "Hussain"),
    ("Kacper", "Kamil"), ("Tyler", "Taylor"), ("Ruby", "Rosie"), ("Evie", "Eva"),
]

# Households draw names from the group that matches their background; everything not
# listed here is in the general (mostly White British) pool.
GROUP_NAMES = {
    "south_asian": {
        "F": "Aisha Fatima Maryam Zainab Amira Hafsa Khadija Inaaya Anaya Priya Simran Jaspreet Iqra Hira Sana Mariam Rukhsana Shabana".split(),
        "M": "Muhammad Mohammed Ibrahim Yusuf Omar Ali Hamza Zayn Ayaan Arjun Rohan Harpreet Gurpreet Ravi Bilal Imran Tariq Usman Asif Kamran Rizwan Shahid Faisal Hassan Hussain Abdullah Idris".split(),
        "S": "Khan Patel Hussain Begum Ali Ahmed Singh Kaur Rahman Akhtar Iqbal Mahmood Chaudhry Sharma Mistry Chauhan Hussein".split(),
    },
    "eastern_european": {
        "F": "Agnieszka Zuzanna Wiktoria Natalia Oliwia Julia Antonia Gabriela Alina Daria Ioana Andreea Elena Maria Ana".split(),
        "M": "Kacper Jakub Szymon Filip Mateusz Wojciech Bartosz Antoni Mihai Andrei Stefan Ionut Florin".split(),
        "S": "Nowak Kowalski Wisniewski Wojcik Kaminski Lewandowski Zielinski Popescu Ionescu Popa".split(),
    },
    "black": {
        "F": "Precious Blessing Chidinma Amara Nia Chanel Shanice Tiana".split(),
        "M": "Kwame Kofi Chinedu Emeka Tobi Jermaine Tyrone Marcus Andre Darnell".split(),
        "S": "Okafor Adeyemi Mensah Asante Boateng Owusu Nwosu Okonkwo Campbell Campbell-Brown".split(),
    },
    "irish": {
        "F": "Niamh Aoife Ciara Roisin Erin".split(),
        "M": "Cian Oisin Padraig Declan Eoin Liam".split(),
        "S": "Murphy Kelly O'Brien O'Connor O'Neill McCarthy Gallagher Doherty Quinn Byrne Walsh Ryan Sullivan".split(),
    },
}
_SPECIAL = {n for g in GROUP_NAMES.values() for names in g.values() for n in names}
GROUP_NAMES["british"] = {
    "F": [n for n in FEMALE if n not in _SPECIAL],
    "M": [n for n in MALE if n not in _SPECIAL],
    "S": [n for n in SURNAMES if n not in _SPECIAL],
}
# group -> (share of households, CBDS ethnicity codes with weights, first language)
GROUPS = {
    "british": (0.66, {"WBRI": 0.93, "WOTH": 0.02, "MWBC": 0.03, "NOBT": 0.02}, "ENG"),
    "south_asian": (0.13, {"APKN": 0.5, "ABAN": 0.2, "AIND": 0.25, "AOTH": 0.05}, "URD"),
    "eastern_european": (0.08, {"WOTH": 0.85, "WROM": 0.05, "REFU": 0.1}, "POL"),
    "black": (0.08, {"BAFR": 0.55, "BCRB": 0.3, "BOTH": 0.05, "MWBA": 0.1}, "ENG"),
    "irish": (0.05, {"WIRI": 0.9, "WIRT": 0.1}, "ENG"),
}
