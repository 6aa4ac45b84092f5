"""A seeded generator of realistic support tickets in English and German.

Each ticket gets a group, a type, a priority and a product, and text built from them: the topic
names the group's subject matter, the phrasing follows the type, urgency cues follow the priority,
and the product is named or only hinted at. The link is real but noisy, like a real helpdesk:
agents file some tickets under a neighbouring group, customers phrase some tickets like another
type, cues are often missing or misleading, and some tickets mention a second topic. The same seed always gives the same tickets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

GROUPS = (
    "Billing",
    "Technical Support",
    "Accounts & Access",
    "Shipping",
    "Sales",
    "Infrastructure",
    "Onboarding",
)
TYPES = ("Question", "Incident", "Problem", "Feature Request", "Refund")
PRIORITIES = ("Low", "Medium", "High", "Urgent")
PRODUCTS = ("Web App", "Mobile App", "POS Terminal", "Analytics", "API")


@dataclass(frozen=True)
class LabelledText:
    """One ticket's text and its true labels (group and type by name, priority by label)."""

    subject: str
    body: str
    group: str
    priority: str
    type: str
    product: str | None
    language: str
    tags: tuple[str, ...] = ()
    """The tags agents give such a ticket (:func:`topic_tags`, or a data file's own)."""


def topic_tags(priority: str, ticket_type: str, product: str | None) -> tuple[str, ...]:
    """The tags agents of the generated account give a ticket: ``escalated`` when it is urgent,
    ``refund`` on a refund, ``mobile`` for the mobile app (each follows what the text says)."""
    rules = (
        ("escalated", priority == "Urgent"),
        ("refund", ticket_type == "Refund"),
        ("mobile", product == "Mobile App"),
    )
    return tuple(tag for tag, hit in rules if hit)


_GROUP_WEIGHTS = (0.18, 0.25, 0.15, 0.10, 0.10, 0.10, 0.12)

_TYPE_GIVEN_GROUP = {
    "Billing": (0.35, 0.05, 0.20, 0.05, 0.35),
    "Technical Support": (0.15, 0.35, 0.35, 0.15, 0.0),
    "Accounts & Access": (0.35, 0.30, 0.25, 0.10, 0.0),
    "Shipping": (0.35, 0.10, 0.30, 0.0, 0.25),
    "Sales": (0.60, 0.0, 0.05, 0.25, 0.10),
    "Infrastructure": (0.10, 0.60, 0.30, 0.0, 0.0),
    "Onboarding": (0.60, 0.0, 0.20, 0.20, 0.0),
}

_PRIORITY_GIVEN_TYPE = {
    "Question": (0.45, 0.45, 0.09, 0.01),
    "Incident": (0.05, 0.35, 0.45, 0.15),
    "Problem": (0.15, 0.50, 0.30, 0.05),
    "Feature Request": (0.60, 0.35, 0.05, 0.0),
    "Refund": (0.25, 0.55, 0.18, 0.02),
}

_PRODUCT_BIAS = {
    "Shipping": "POS Terminal",
    "Infrastructure": "API",
    "Sales": "Analytics",
    "Accounts & Access": "Web App",
}

# Agents disagree: the group a ticket ends up in is sometimes a neighbour of its topic's group.
_NEIGHBOURS = {
    "Billing": ("Sales", "Accounts & Access"),
    "Technical Support": ("Infrastructure", "Onboarding"),
    "Accounts & Access": ("Technical Support", "Billing"),
    "Shipping": ("Billing", "Sales"),
    "Sales": ("Billing", "Onboarding"),
    "Infrastructure": ("Technical Support",),
    "Onboarding": ("Technical Support", "Sales"),
}

# Types that customers' phrasing is easily mistaken for.
_TYPE_CONFUSIONS = {
    "Question": ("Feature Request", "Problem"),
    "Incident": ("Problem",),
    "Problem": ("Incident", "Question"),
    "Feature Request": ("Question",),
    "Refund": ("Question", "Problem"),
}

# Topics per group: (English noun phrase, German noun phrase, English subject, German subject).
_TOPICS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "Billing": (
        ("the invoice for last month", "die Rechnung für den letzten Monat", "Invoice", "Rechnung"),
        (
            "a double charge on our credit card",
            "eine doppelte Abbuchung von unserer Kreditkarte",
            "Charged twice",
            "Doppelte Abbuchung",
        ),
        (
            "the VAT number on our invoices",
            "die USt-IdNr. auf unseren Rechnungen",
            "VAT number on invoice",
            "USt-IdNr. auf Rechnung",
        ),
        (
            "the renewal of our subscription",
            "die Verlängerung unseres Abonnements",
            "Subscription renewal",
            "Abo-Verlängerung",
        ),
        (
            "the payment method on file",
            "die hinterlegte Zahlungsmethode",
            "Payment method",
            "Zahlungsmethode",
        ),
        (
            "a credit note we were promised",
            "eine zugesagte Gutschrift",
            "Missing credit note",
            "Fehlende Gutschrift",
        ),
    ),
    "Technical Support": (
        (
            "the export function, which crashes",
            "die Exportfunktion, die abstürzt",
            "Export crashes",
            "Export stürzt ab",
        ),
        (
            "an error message when saving a record",
            "eine Fehlermeldung beim Speichern eines Datensatzes",
            "Error when saving",
            "Fehler beim Speichern",
        ),
        (
            "the sync between devices",
            "die Synchronisierung zwischen den Geräten",
            "Sync not working",
            "Synchronisierung funktioniert nicht",
        ),
        (
            "the search, which returns wrong results",
            "die Suche, die falsche Ergebnisse liefert",
            "Search results wrong",
            "Suche liefert falsche Ergebnisse",
        ),
        (
            "the latest update, which broke the printing",
            "das letzte Update, das den Druck kaputt gemacht hat",
            "Printing broken after update",
            "Drucken nach Update defekt",
        ),
        (
            "attachments that cannot be uploaded",
            "Anhänge, die sich nicht hochladen lassen",
            "Upload of attachments fails",
            "Upload von Anhängen schlägt fehl",
        ),
    ),
    "Accounts & Access": (
        (
            "the login for a new colleague",
            "den Login für einen neuen Kollegen",
            "Login for new colleague",
            "Login für neuen Kollegen",
        ),
        (
            "the two-factor code, which never arrives",
            "den Zwei-Faktor-Code, der nie ankommt",
            "2FA code not arriving",
            "2FA-Code kommt nicht an",
        ),
        (
            "the password reset link",
            "den Link zum Zurücksetzen des Passworts",
            "Password reset",
            "Passwort zurücksetzen",
        ),
        (
            "single sign-on with our Azure AD",
            "Single Sign-on mit unserem Azure AD",
            "SSO configuration",
            "SSO-Konfiguration",
        ),
        (
            "user permissions for the admin role",
            "die Benutzerrechte der Admin-Rolle",
            "Admin permissions",
            "Admin-Berechtigungen",
        ),
        ("a locked user account", "ein gesperrtes Benutzerkonto", "Account locked", "Konto gesperrt"),
    ),
    "Shipping": (
        (
            "the delivery of our order",
            "die Lieferung unserer Bestellung",
            "Where is my order",
            "Wo bleibt meine Bestellung",
        ),
        (
            "a parcel that arrived damaged",
            "ein beschädigt angekommenes Paket",
            "Damaged parcel",
            "Paket beschädigt",
        ),
        (
            "the tracking number for the shipment",
            "die Sendungsnummer der Lieferung",
            "Tracking number",
            "Sendungsnummer",
        ),
        (
            "returning a device we do not need",
            "die Rücksendung eines Geräts, das wir nicht brauchen",
            "Return a device",
            "Gerät zurücksenden",
        ),
        (
            "the delivery address on the order",
            "die Lieferadresse der Bestellung",
            "Change delivery address",
            "Lieferadresse ändern",
        ),
        ("missing items in the package", "fehlende Artikel im Paket", "Items missing", "Artikel fehlen"),
    ),
    "Sales": (
        (
            "a quote for 50 additional licences",
            "ein Angebot für 50 zusätzliche Lizenzen",
            "Quote for licences",
            "Angebot für Lizenzen",
        ),
        (
            "upgrading to the enterprise plan",
            "ein Upgrade auf den Enterprise-Tarif",
            "Upgrade to enterprise",
            "Upgrade auf Enterprise",
        ),
        (
            "a product demo for our management",
            "eine Produktdemo für unsere Geschäftsleitung",
            "Demo request",
            "Demo-Anfrage",
        ),
        (
            "volume discounts for our franchise",
            "Mengenrabatte für unser Franchise",
            "Volume discount",
            "Mengenrabatt",
        ),
        (
            "the pricing of the annual plan",
            "die Preise des Jahrestarifs",
            "Annual plan pricing",
            "Preise Jahrestarif",
        ),
    ),
    "Infrastructure": (
        (
            "the API, which returns 503 errors",
            "die API, die 503-Fehler liefert",
            "API returns 503",
            "API liefert 503",
        ),
        (
            "very slow response times of the service",
            "sehr langsame Antwortzeiten des Dienstes",
            "Service very slow",
            "Dienst sehr langsam",
        ),
        (
            "webhooks that are not delivered",
            "Webhooks, die nicht zugestellt werden",
            "Webhooks not delivered",
            "Webhooks kommen nicht an",
        ),
        (
            "an outage in the EU data centre",
            "einen Ausfall im EU-Rechenzentrum",
            "Outage EU region",
            "Ausfall EU-Region",
        ),
        (
            "timeouts on the database connection",
            "Timeouts bei der Datenbankverbindung",
            "Database timeouts",
            "Datenbank-Timeouts",
        ),
    ),
    "Onboarding": (
        (
            "importing our customer data from the old system",
            "den Import unserer Kundendaten aus dem Altsystem",
            "Data import",
            "Datenimport",
        ),
        (
            "the initial setup of our account",
            "die Ersteinrichtung unseres Kontos",
            "Initial setup",
            "Ersteinrichtung",
        ),
        (
            "a training session for our staff",
            "eine Schulung für unsere Mitarbeiter",
            "Training session",
            "Schulung",
        ),
        (
            "configuring the first workflows",
            "die Konfiguration der ersten Workflows",
            "Configure workflows",
            "Workflows einrichten",
        ),
        (
            "migrating our templates",
            "die Migration unserer Vorlagen",
            "Template migration",
            "Vorlagen migrieren",
        ),
    ),
}

# Phrasing per type; {topic} is the noun phrase, {product} the product (or "your product").
_TYPE_LINES = {
    "Question": (
        (
            "I have a question about {topic} in {product}.",
            "Could you explain how {topic} works?",
            "Quick question regarding {topic}: what do we need to do?",
            "Where can I find information about {topic}?",
        ),
        (
            "Ich habe eine Frage zu {topic} in {product}.",
            "Können Sie mir erklären, wie das mit {topic} funktioniert?",
            "Kurze Frage zu {topic}: was müssen wir tun?",
            "Wo finde ich Informationen über {topic}?",
        ),
    ),
    "Incident": (
        (
            "Since this morning we have a serious issue with {topic} in {product}.",
            "Right now nothing works: {topic} stopped working for all of us.",
            "We are currently affected by a failure of {topic}.",
            "Something broke today with {topic} and our team cannot continue.",
        ),
        (
            "Seit heute Morgen haben wir ein ernstes Problem mit {topic} in {product}.",
            "Gerade funktioniert nichts mehr: {topic} geht bei uns allen nicht.",
            "Wir sind aktuell von einer Störung bei {topic} betroffen.",
            "Heute ist etwas mit {topic} kaputtgegangen und unser Team kann nicht weiterarbeiten.",
        ),
    ),
    "Problem": (
        (
            "We keep having trouble with {topic}; it happened again yesterday.",
            "For the third time this month there is an issue with {topic} in {product}.",
            "The problem with {topic} is back although it was supposedly fixed.",
            "Every week we run into the same problem with {topic}.",
        ),
        (
            "Wir haben immer wieder Ärger mit {topic}; gestern ist es wieder passiert.",
            "Zum dritten Mal in diesem Monat gibt es ein Problem mit {topic} in {product}.",
            "Das Problem mit {topic} ist zurück, obwohl es angeblich behoben war.",
            "Jede Woche stoßen wir auf dasselbe Problem mit {topic}.",
        ),
    ),
    "Feature Request": (
        (
            "It would be great if {product} offered more options for {topic}.",
            "We would like to suggest an improvement to {topic}.",
            "Please consider adding a setting for {topic} in a future release.",
            "Our team would love a better way to handle {topic}.",
        ),
        (
            "Es wäre toll, wenn {product} mehr Optionen für {topic} bieten würde.",
            "Wir möchten eine Verbesserung für {topic} vorschlagen.",
            "Bitte überlegen Sie, in einer künftigen Version eine Einstellung für {topic} einzubauen.",
            "Unser Team wünscht sich eine bessere Lösung für {topic}.",
        ),
    ),
    "Refund": (
        (
            "We would like a refund in connection with {topic}.",
            "Please reimburse us; this concerns {topic}.",
            "We are asking for our money back because of {topic}.",
            "Could you refund the amount related to {topic}?",
        ),
        (
            "Wir möchten eine Erstattung im Zusammenhang mit {topic}.",
            "Bitte erstatten Sie uns den Betrag; es geht um {topic}.",
            "Wir verlangen unser Geld zurück wegen {topic}.",
            "Könnten Sie den Betrag für {topic} zurückerstatten?",
        ),
    ),
}

_URGENCY = {
    "Low": (
        ("No rush, whenever you have time.", "This is not urgent at all."),
        ("Keine Eile, wann immer Sie Zeit haben.", "Das ist überhaupt nicht dringend."),
    ),
    "Medium": (
        ("We would appreciate an answer this week.", "Please get back to us when you can."),
        ("Wir würden uns über eine Antwort diese Woche freuen.", "Bitte melden Sie sich, sobald es geht."),
    ),
    "High": (
        ("This is blocking several colleagues, please prioritise it.", "We need a solution today."),
        ("Das blockiert mehrere Kollegen, bitte priorisieren Sie es.", "Wir brauchen heute eine Lösung."),
    ),
    "Urgent": (
        ("URGENT: our whole business is at a standstill!", "Production is down, please call us immediately."),
        (
            "DRINGEND: unser gesamter Betrieb steht still!",
            "Die Produktion steht, bitte rufen Sie uns sofort an.",
        ),
    ),
}

_DETAILS = {
    "Billing": (
        (
            "The amount in question is {amount} EUR.",
            "Our accounting team needs this before the month closes.",
        ),
        (
            "Es geht um einen Betrag von {amount} EUR.",
            "Unsere Buchhaltung braucht das vor dem Monatsabschluss.",
        ),
    ),
    "Technical Support": (
        (
            "The error message says 'code {code}: unexpected failure'.",
            "We already cleared the cache and restarted.",
        ),
        (
            "Die Fehlermeldung lautet 'Code {code}: unerwarteter Fehler'.",
            "Wir haben den Cache schon geleert und neu gestartet.",
        ),
    ),
    "Accounts & Access": (
        ("The affected user is {user}@example.com.", "We checked the spam folder already."),
        ("Betroffen ist der Benutzer {user}@example.com.", "Den Spam-Ordner haben wir schon geprüft."),
    ),
    "Shipping": (
        ("The order number is ORD-{code}.", "The courier said the parcel was handed over."),
        ("Die Bestellnummer ist ORD-{code}.", "Laut Paketdienst wurde das Paket übergeben."),
    ),
    "Sales": (
        ("We are a team of {count} people.", "Please send us the offer as PDF."),
        ("Wir sind ein Team von {count} Personen.", "Bitte schicken Sie uns das Angebot als PDF."),
    ),
    "Infrastructure": (
        (
            "Latency went up to {count}00 ms and requests time out.",
            "Your status page shows everything green.",
        ),
        (
            "Die Latenz liegt bei {count}00 ms und Anfragen laufen in Timeouts.",
            "Ihre Statusseite zeigt alles grün.",
        ),
    ),
    "Onboarding": (
        ("We are moving {count} users from our previous tool.", "Our go-live is planned for next month."),
        (
            "Wir ziehen {count} Benutzer aus unserem bisherigen Tool um.",
            "Unser Go-live ist für nächsten Monat geplant.",
        ),
    ),
}

# How a product shows when it is not named outright.
_PRODUCT_HINTS = {
    "Web App": (("in the browser", "on the web dashboard"), ("im Browser", "im Web-Dashboard")),
    "Mobile App": (
        ("on the iPhone app", "on our Android phones"),
        ("in der iPhone-App", "auf unseren Android-Handys"),
    ),
    "POS Terminal": (
        ("on the card terminal at the till", "on the receipt printer"),
        ("am Kartenterminal an der Kasse", "am Bondrucker"),
    ),
    "Analytics": (
        ("in the reports", "on the sales dashboard charts"),
        ("in den Berichten", "in den Diagrammen des Verkaufs-Dashboards"),
    ),
    "API": (
        ("through the REST endpoints", "with our API token"),
        ("über die REST-Endpunkte", "mit unserem API-Token"),
    ),
}

_GREETINGS = (
    ("Hello,", "Hi team,", "Dear support,", "Good morning,"),
    ("Hallo,", "Guten Tag,", "Liebes Support-Team,", "Moin,"),
)
_CLOSINGS = (
    ("Thanks,", "Best regards,", "Kind regards,", "Cheers,"),
    ("Danke,", "Viele Grüße,", "Mit freundlichen Grüßen,", "Beste Grüße,"),
)
_NAMES = (
    "Anna",
    "Ben",
    "Chris",
    "Daniela",
    "Emre",
    "Fatima",
    "Georg",
    "Hanna",
    "Ivan",
    "Julia",
    "Kai",
    "Lena",
)


def _pick(rng: random.Random, options: tuple, weights: tuple[float, ...]) -> str:
    return rng.choices(options, weights=weights, k=1)[0]


def generate_ticket(rng: random.Random, german_share: float = 0.35) -> LabelledText:
    """One labelled ticket drawn from ``rng``."""
    topic_group = _pick(rng, GROUPS, _GROUP_WEIGHTS)
    ticket_type = _pick(rng, TYPES, _TYPE_GIVEN_GROUP[topic_group])
    priority = _pick(rng, PRIORITIES, _PRIORITY_GIVEN_TYPE[ticket_type])
    biased = _PRODUCT_BIAS.get(topic_group)
    product = biased if biased and rng.random() < 0.5 else rng.choice(PRODUCTS)
    lang = 1 if rng.random() < german_share else 0

    topic = rng.choice(_TOPICS[topic_group])
    product_text = product if rng.random() < 0.6 else rng.choice(_PRODUCT_HINTS[product][lang])
    fill = {
        "topic": topic[lang],
        "product": product_text,
        "amount": rng.randint(20, 4000),
        "code": rng.randint(1000, 99999),
        "count": rng.randint(3, 90),
        "user": rng.choice(_NAMES).lower(),
    }
    phrasing = ticket_type
    if rng.random() < 0.10:  # the customer's words suggest another type than the agent chose
        phrasing = rng.choice(_TYPE_CONFUSIONS[ticket_type])
    lines = [rng.choice(_GREETINGS[lang]), "", rng.choice(_TYPE_LINES[phrasing][lang]).format(**fill)]
    if rng.random() < 0.7:
        lines.append(rng.choice(_DETAILS[topic_group][lang]).format(**fill))
    group = topic_group
    second = rng.random()
    if second < 0.3:  # a second topic muddies the text; for a neighbouring one, agents may file it there
        other_group = rng.choice(_NEIGHBOURS[topic_group]) if second < 0.2 else rng.choice(GROUPS)
        other = rng.choice(_TOPICS[other_group])
        lines.append(
            ("Also, a small note about " if lang == 0 else "Außerdem noch ein Hinweis zu ")
            + other[lang]
            + "."
        )
        if second < 0.2 and rng.random() < 0.5:
            group = other_group
    if rng.random() < 0.03:  # an agent's plain mistake, invisible in the text
        group = rng.choice(_NEIGHBOURS[topic_group])
    cue = rng.random()
    if cue < 0.55:
        lines.append(rng.choice(_URGENCY[priority][lang]))
    elif cue < 0.65:  # a misleading cue
        lines.append(rng.choice(_URGENCY[rng.choice(PRIORITIES)][lang]))
    lines += ["", rng.choice(_CLOSINGS[lang]), rng.choice(_NAMES)]

    subject = topic[2 + lang]
    if rng.random() < 0.3:
        subject = f"{subject} ({product})"
    elif rng.random() < 0.1:
        subject = ("Re: " if lang == 0 else "AW: ") + subject

    return LabelledText(
        subject=subject,
        body="\n".join(lines),
        group=group,
        priority=priority,
        type=ticket_type,
        product=product,
        language="de" if lang else "en",
        tags=topic_tags(priority, ticket_type, product),
    )


def generate_tickets(count: int, seed: int = 42) -> Iterator[LabelledText]:
    """``count`` labelled tickets; the same ``seed`` always yields the same sequence."""
    rng = random.Random(seed)
    for _ in range(count):
        yield generate_ticket(rng)
