//! A small household corpus the tests and benchmarks build themselves, one file of every kind (Markdown, HTML, text,
//! a two-page PDF, a DOCX, an mbox, an .ics, a .vtt, an .srt), with questions whose answers sit in one known file, for
//! `lar kb eval` (recall@k, MRR). Facts are distinct enough that a working retriever finds them and a broken one
//! does not; one note is in Spanish, asked with and without accents.

use std::path::Path;

use crate::fixtures::{self, Block};

/// `(file name, bytes)` of every corpus file.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    let t = |s: &str| s.as_bytes().to_vec();
    vec![
        ("garden.md", t(GARDEN)),
        ("boiler.md", t(BOILER)),
        ("reunion.md", t(REUNION)),
        ("vet.md", t(VET)),
        ("recipes.html", t(RECIPES)),
        ("network.html", t(NETWORK)),
        ("bike.txt", t(BIKE)),
        (
            "lease.pdf",
            fixtures::pdf(&[
                "Apartment Lease Agreement. This lease is made between the landlord, Carmen Vidal, and the \
                 tenants. The monthly rent is 1,250 euros, due on the fifth day of each month by bank transfer. \
                 Utilities such as electricity and internet are paid by the tenants.",
                "Termination and deposit. Either party may end this lease with sixty days written notice. The \
                 security deposit equals two months of rent and is returned within thirty days after the keys \
                 are handed back, minus the cost of any damage.",
            ]),
        ),
        (
            "insurance.docx",
            fixtures::docx(
                "Car insurance policy",
                &[
                    Block::Heading(1, "Car insurance policy".into()),
                    Block::Para("Policy number AX-4471 covers the family car, a blue Toyota Corolla.".into()),
                    Block::Heading(2, "Coverage".into()),
                    Block::Para(
                        "The policy is comprehensive: theft, fire, glass and collision damage are covered. The \
                         deductible is 300 euros per claim."
                            .into(),
                    ),
                    Block::Table(vec![
                        vec!["Item".into(), "Limit".into()],
                        vec!["Roadside assistance".into(), "unlimited".into()],
                        vec!["Replacement car".into(), "7 days".into()],
                    ]),
                    Block::Heading(2, "Claims".into()),
                    Block::Para(
                        "After an accident, report the claim within 48 hours by calling the insurer's claims \
                         line at 900 123 456, and keep photos of the damage."
                            .into(),
                    ),
                ],
            ),
        ),
        ("mail.mbox", t(MBOX)),
        ("calendar.ics", t(ICS)),
        ("meeting.vtt", t(VTT)),
        ("podcast.srt", t(SRT)),
    ]
}

/// The eval questions as JSON Lines (`{"q": ..., "pages": [...]}`).
pub const QUESTIONS: &[(&str, &str)] = &[
    ("When should the tomatoes be watered?", "garden.md"),
    ("What pressure should the boiler show?", "boiler.md"),
    ("How long does the paella rice cook?", "recipes.html"),
    ("What is the guest wifi network called?", "network.html"),
    ("How much is the monthly rent?", "lease.pdf"),
    ("How much notice is needed to end the lease?", "lease.pdf"),
    (
        "What is the deductible of the car insurance?",
        "insurance.docx",
    ),
    (
        "How soon must I report a car accident claim?",
        "insurance.docx",
    ),
    ("When is the dentist appointment?", "mail.mbox"),
    (
        "Do I need to sign a permission slip for the museum trip?",
        "mail.mbox",
    ),
    ("When is the flight to Lisbon?", "calendar.ics"),
    ("Where is the dinner with Marta?", "calendar.ics"),
    (
        "What budget did Ana give for the kitchen renovation?",
        "meeting.vtt",
    ),
    ("When does the contractor start work?", "meeting.vtt"),
    ("¿Cuánto sube la cuota de la comunidad?", "reunion.md"),
    (
        "cuanto sube la cuota de la comunidad de vecinos",
        "reunion.md",
    ),
    ("How often should the bike chain be lubricated?", "bike.txt"),
    ("When is Luna's rabies vaccine due?", "vet.md"),
    (
        "What did the podcast guest say about sourdough starter?",
        "podcast.srt",
    ),
    ("How many eggs does the tortilla need?", "recipes.html"),
];

/// The questions file's text.
pub fn questions_jsonl() -> String {
    jsonl(QUESTIONS)
}

/// Questions as `lar kb eval` reads them: `{"q": ..., "pages": [file]}` per line.
pub fn jsonl(questions: &[(&str, &str)]) -> String {
    questions
        .iter()
        .map(|(q, f)| format!("{}\n", serde_json::json!({"q": q, "pages": [f]})))
        .collect()
}

/// Writes `files` into `dir` (created) and the questions' `questions` file into `dir`'s parent.
pub fn write_files(
    dir: &Path,
    files: &[(&str, Vec<u8>)],
    questions: (&str, String),
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    let parent = dir.parent().unwrap_or(dir);
    std::fs::write(parent.join(questions.0), questions.1)
}

/// Writes the corpus into `dir` (created) and `questions.jsonl` beside it, into `dir`'s parent.
pub fn write(dir: &Path) -> std::io::Result<()> {
    write_files(dir, &files(), ("questions.jsonl", questions_jsonl()))
}

const GARDEN: &str = "# Vegetable garden plan

## Planting

Tomatoes and peppers go into the raised beds in late April, after the last frost. Basil is planted between the
tomato plants to keep pests away.

## Watering

The drip irrigation waters the tomatoes every morning at 6 am for 20 minutes. In August, when it is hottest, add a
second run at 8 pm.

## Compost

Kitchen scraps go into the green bin; turn the compost pile every two weeks.
";

const BOILER: &str = "# Heating system

The boiler is a Vaillant ecoTEC plus in the utility room.

## Pressure

The pressure gauge should read between 1.2 and 1.5 bar when the heating is cold. If it drops below 1 bar, open the
filling loop under the boiler slowly until it reaches 1.5 bar.

## Service

The annual service is done every October by Calor Services; the last engineer was Pedro.

## Reset

If the display shows F28, press the reset button for three seconds.
";

const REUNION: &str = "# Reunión de vecinos

## Cuota de la comunidad

En la reunión de marzo se aprobó que la cuota de la comunidad sube a 85 euros al mes a partir de julio, para pagar
la reparación del ascensor.

## Limpieza

La limpieza de la escalera será los martes y los viernes.
";

const VET: &str = "# Luna (dog) health record

Luna is a four-year-old border collie. Her vet is Dr. Kim at the Riverside clinic.

## Vaccinations

The rabies vaccine is due again in September. The last deworming tablet was given in May.

## Food

Luna eats 300 grams of dry food a day, split into two meals.
";

const RECIPES: &str = "<!DOCTYPE html><html><head><title>Family recipes</title>
<style>body { font-family: serif; }</style><script>var tracking = 'should not be indexed';</script></head>
<body><nav>Home | Recipes | About</nav>
<h1>Family recipes</h1>
<h2>Paella</h2>
<p>Fry the chicken and rabbit, add the green beans, then the tomato and the saffron. Add the bomba rice and cook
it for 18 minutes without stirring.</p>
<h2>Spanish tortilla</h2>
<p>Six eggs, four potatoes and one onion. Fry the potatoes slowly in olive oil before mixing them with the beaten
eggs.</p>
<table><tr><th>Dish</th><th>Serves</th></tr><tr><td>Paella</td><td>6</td></tr><tr><td>Tortilla</td><td>4</td></tr></table>
</body></html>
";

const NETWORK: &str = "<html><head><title>Home network</title></head><body>
<h1>Home network</h1>
<h2>Wifi</h2>
<p>The main network is casa-5g. The guest wifi network is called casa-guest and its password is on the card on
the fridge.</p>
<h2>Router</h2>
<p>The router is in the hall cupboard; two mesh nodes extend coverage to the garden office.</p>
</body></html>
";

const BIKE: &str = "Bicycle maintenance notes

Lubricate the chain every 300 kilometres, or after riding in the rain.
Tyre pressure: 80 psi on the road bike, 35 psi on the mountain bike.
Brake pads were replaced in February.
";

const MBOX: &str = "From reminders@ortega-dental.example Mon Mar 06 09:00:00 2023
From: Ortega Dental <reminders@ortega-dental.example>
To: family@home.example
Subject: Appointment reminder
Date: Mon, 06 Mar 2023 09:00:00 +0100
Message-ID: <rem-1@ortega-dental.example>
Content-Type: text/plain; charset=utf-8

Dear patient, this is a reminder of your dentist appointment with Dr. Ortega on Tuesday 14 March at 10:30.
Please arrive ten minutes early.

From office@school.example Wed Mar 08 12:00:00 2023
From: Lincoln School <office@school.example>
To: family@home.example
Subject: Science museum field trip
Date: Wed, 08 Mar 2023 12:00:00 +0100
Message-ID: <trip-2023@school.example>
Content-Type: multipart/alternative; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=utf-8

The class visits the science museum on 22 March. Parents must sign the permission slip and return it by Friday.
--b1
Content-Type: text/html; charset=utf-8

<p>The class visits the science museum on 22 March.</p>
--b1--

From broken@example Thu Mar 09 00:00:00 2023
From: =?broken?Q?
Subject: =?utf-8?B?####?=
Content-Type: multipart/mixed; boundary=

--
Content-Transfer-Encoding: base64

!!!! not base64 !!!!

From accountant@books.example Fri Mar 10 16:30:00 2023
From: Marta Books <accountant@books.example>
To: family@home.example
Subject: Tax return documents
Date: Fri, 10 Mar 2023 16:30:00 +0100
Message-ID: <tax-10@books.example>
In-Reply-To: <tax-1@home.example>
References: <tax-1@home.example>

Please send me the bank certificates and the mortgage statement before 15 April so I can file the tax return.
";

const ICS: &str = "BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Lar//corpus//EN
BEGIN:VEVENT
UID:flight-1@lar
SUMMARY:Flight to Lisbon TP1234
DTSTART:20230512T071500Z
DTEND:20230512T094500Z
LOCATION:Madrid Barajas Terminal 2
DESCRIPTION:Check in online 24 hours before. Seats 14A and 14B.
END:VEVENT
BEGIN:VEVENT
UID:dinner-1@lar
SUMMARY:Dinner with Marta
DTSTART:20230520T200000Z
DTEND:20230520T223000Z
LOCATION:Restaurante La Barca\\, Calle del Mar 3
ATTENDEE;CN=Marta Books:mailto:accountant@books.example
DESCRIPTION:Table booked for two.
END:VEVENT
BEGIN:VEVENT
UID:piano@lar
SUMMARY:Piano lesson
DTSTART;VALUE=DATE:20230515
DESCRIPTION:Bring the Chopin book.
END:VEVENT
BEGIN:VEVENT
UID:broken@lar
SUMMARY:Event with an impossible date
DTSTART:20231345T990000Z
END:VEVENT
END:VCALENDAR
";

const VTT: &str = "WEBVTT

NOTE kitchen renovation meeting

00:00:01.000 --> 00:00:06.000
<v Ana>The budget for the kitchen renovation is 18,000 euros, including the new worktop.

00:00:06.500 --> 00:00:10.000
<v Luis>The contractor starts work on June 3rd and needs about five weeks.

00:00:10.500 --> 00:00:13.000
<v Ana>Then we eat out during June.
";

const SRT: &str = "1
00:00:00,000 --> 00:00:04,000
Host: Welcome back to the bread show.

2
00:00:04,500 --> 00:00:09,000
Guest: Feed your sourdough starter twice a day with equal weights of flour and water.

3
00:00:09,500 --> 00:00:12,000
Guest: Keep it at room temperature and it doubles in six hours.
";
