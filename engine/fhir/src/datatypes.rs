//! v2 data types → FHIR data types: XPN → HumanName, XAD → Address, XTN → ContactPoint,
//! CE/CWE → CodeableConcept, XCN → a Practitioner, XON → an Organization. Values are borrowed
//! from the message; what is empty is simply not written ([`JsonWriter`] drops it), so a
//! missing field never leaves an empty element.

use std::borrow::Cow;

use wyvern_hl7::{IndexedSegment, Value as V2};

use crate::Context;
use crate::bundle::{StableId, Upsert};
use crate::json::{Item, JsonWriter, Key, escape_into};
use crate::spec::Coding;

/// Component `n` of `v`, decoded and trimmed ("" when absent).
pub fn comp<'a>(v: Option<V2<'a>>, n: usize) -> Cow<'a, str> {
    decoded(v.and_then(|v| v.component(n)))
}

/// `v` decoded and trimmed ("" when absent).
fn decoded(v: Option<V2<'_>>) -> Cow<'_, str> {
    match v.map(|c| c.as_str()) {
        None => Cow::Borrowed(""),
        Some(Cow::Borrowed(s)) => Cow::Borrowed(trim(s)),
        Some(Cow::Owned(s)) if trim(&s).len() == s.len() => Cow::Owned(s),
        Some(Cow::Owned(s)) => Cow::Owned(trim(&s).to_string()),
    }
}

/// `str::trim`, without its Unicode tables when both ends are plainly not white space.
pub fn trim(s: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|b| (0x21..0x80).contains(b));
    if plain(s.as_bytes().first()) && plain(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// A composite value split into its components once: XPN, XAD, XTN and XCN read up to
/// twelve, and re-splitting for each would be quadratic.
#[derive(Debug)]
pub struct Comps<'a>([Option<V2<'a>>; 16]);

pub fn comps(v: V2<'_>) -> Comps<'_> {
    let mut parts = [None; 16];
    for (slot, c) in parts.iter_mut().zip(v.components()) {
        *slot = Some(c);
    }
    Comps(parts)
}

impl<'a> Comps<'a> {
    /// Component `n` (1-based), decoded and trimmed.
    pub fn get(&self, n: usize) -> Cow<'a, str> {
        decoded(self.value(n))
    }

    pub fn value(&self, n: usize) -> Option<V2<'a>> {
        self.0.get(n.checked_sub(1)?).copied().flatten()
    }
}

/// A field's first component (the whole value of a simple field).
pub fn text<'a>(seg: &IndexedSegment<'a>, n: usize) -> Cow<'a, str> {
    comp(seg.field(n).and_then(|f| f.repetition(1)), 1)
}

/// The first repetition of field `n` of a segment the message may lack.
pub fn first_rep<'a>(seg: Option<&IndexedSegment<'a>>, n: usize) -> Option<V2<'a>> {
    seg?.field(n).and_then(|f| f.repetition(1))
}

/// A field's repetitions that carry anything.
pub fn reps<'a>(seg: &IndexedSegment<'a>, n: usize) -> impl Iterator<Item = V2<'a>> + use<'a> {
    seg.field(n)
        .into_iter()
        .flat_map(|f| f.repetitions())
        .filter(|r| !r.is_empty())
}

/// A resource reference with its display text.
#[derive(Debug, Clone)]
pub struct Ref {
    pub reference: StableId,
    pub display: String,
}

impl Ref {
    pub fn write(&self, w: &mut JsonWriter, k: impl Key) {
        reference(w, k, self.reference.url(), &self.display);
    }
}

pub fn reference(w: &mut JsonWriter, k: impl Key, reference: &str, display: &str) {
    w.object(k, |w| {
        w.str("reference", reference);
        w.str("display", display);
    });
}

pub fn coding(w: &mut JsonWriter, k: impl Key, c: &Coding<'_>) {
    w.object(k, |w| {
        w.opt_str("system", c.system);
        w.str("code", c.code);
        w.opt_str("display", c.display);
    });
}

/// A CodeableConcept of one mapped coding.
pub fn concept(w: &mut JsonWriter, k: impl Key, c: &Coding<'_>) {
    w.object(k, |w| w.array("coding", |w| coding(w, Item, c)));
}

/// A CodeableConcept of one fixed coding (system, code, display).
pub fn fixed_concept(w: &mut JsonWriter, k: impl Key, system: &str, code: &str, display: &str) {
    w.object(k, |w| {
        w.array("coding", |w| {
            w.object(Item, |w| {
                w.str("system", system);
                w.str("code", code);
                w.str("display", display);
            })
        })
    });
}

/// CE/CWE as read: up to two codings (identifier^text^system, then the alternate triplet)
/// and the text.
#[derive(Debug, Default)]
pub struct Concept<'m, 'a> {
    pub codings: Vec<(Option<&'m str>, Cow<'a, str>, Cow<'a, str>)>,
    pub text: Cow<'a, str>,
}

/// CE/CWE: identifier^text^coding system (^ alternate triplet), systems through the
/// coding-systems table; an unknown system keeps the code without a system.
pub fn codeable<'m, 'a>(cx: &Context<'m, 'a>, v: Option<V2<'a>>) -> Concept<'m, 'a> {
    let map = cx.map;
    let mut codings = Vec::new();
    for base in [0, 3] {
        let code = comp(v, base + 1);
        if code.is_empty() {
            continue;
        }
        let sys = comp(v, base + 3);
        let system = if sys.bytes().any(|b| b.is_ascii_lowercase()) {
            map.lookup(&map.map.coding_systems, &sys.to_ascii_uppercase())
        } else {
            map.lookup(&map.map.coding_systems, &sys)
        };
        codings.push((system, code, comp(v, base + 2)));
    }
    Concept {
        codings,
        text: comp(v, 2),
    }
}

impl Concept<'_, '_> {
    pub fn is_empty(&self) -> bool {
        self.codings.is_empty() && self.text.is_empty()
    }

    pub fn write(&self, w: &mut JsonWriter, k: impl Key) {
        w.object(k, |w| {
            w.array("coding", |w| {
                for (system, code, display) in &self.codings {
                    w.object(Item, |w| {
                        w.opt_str("system", *system);
                        w.str("code", code);
                        w.str("display", display);
                    });
                }
            });
            w.str("text", &self.text);
        });
    }

    /// The concept's part of a stable id key. Its form (the concept as JSON, empty members
    /// kept) is what earlier versions hashed: changing it would change every id made from it.
    pub fn key(&self) -> String {
        let mut k = String::with_capacity(160);
        k.push_str(r#"{"coding":["#);
        for (i, (system, code, display)) in self.codings.iter().enumerate() {
            if i > 0 {
                k.push(',');
            }
            k.push_str(r#"{"system":"#);
            match system {
                Some(s) => escape_into(&mut k, s),
                None => k.push_str("null"),
            }
            k.push_str(r#","code":"#);
            escape_into(&mut k, code);
            k.push_str(r#","display":"#);
            escape_into(&mut k, display);
            k.push('}');
        }
        k.push_str(r#"],"text":"#);
        escape_into(&mut k, &self.text);
        k.push('}');
        k
    }
}

/// XPN as read: family^given^middle^suffix^prefix^^type.
#[derive(Debug)]
pub struct HumanName<'a> {
    use_: &'static str,
    pub family: Cow<'a, str>,
    pub given: Vec<Cow<'a, str>>,
    prefix: Cow<'a, str>,
    suffix: Cow<'a, str>,
}

pub fn human_name(v: V2<'_>) -> HumanName<'_> {
    let parts = comps(v);
    let c = |n| parts.get(n);
    let use_ = match &*c(7) {
        "L" => "official",
        "D" => "usual",
        "M" => "maiden",
        "N" => "nickname",
        "A" => "anonymous",
        _ => "",
    };
    HumanName {
        use_,
        family: comp(parts.value(1), 1), // FN.1 surname
        given: [c(2), c(3)].into_iter().filter(|s| !s.is_empty()).collect(),
        prefix: c(5),
        suffix: c(4),
    }
}

impl HumanName<'_> {
    pub fn write(&self, w: &mut JsonWriter, k: impl Key) {
        w.object(k, |w| {
            w.str("use", self.use_);
            w.str("family", &self.family);
            w.array("given", |w| self.given.iter().for_each(|g| w.str(Item, g)));
            w.array("prefix", |w| w.str(Item, &self.prefix));
            w.array("suffix", |w| w.str(Item, &self.suffix));
        });
    }

    /// "Given Family", for reference displays.
    pub fn display(&self) -> String {
        let given = self.given.first().map_or("", |g| g);
        format!("{given} {}", self.family).trim().to_string()
    }

    /// The name's part of a stable id key (as JSON, empty members kept: see [`Concept::key`]).
    pub fn key(&self) -> String {
        let mut k = String::with_capacity(128);
        k.push_str(r#"{"use":"#);
        escape_into(&mut k, self.use_);
        k.push_str(r#","family":"#);
        escape_into(&mut k, &self.family);
        k.push_str(r#","given":["#);
        for (i, g) in self.given.iter().enumerate() {
            if i > 0 {
                k.push(',');
            }
            escape_into(&mut k, g);
        }
        k.push_str(r#"],"prefix":["#);
        escape_into(&mut k, &self.prefix);
        k.push_str(r#"],"suffix":["#);
        escape_into(&mut k, &self.suffix);
        k.push_str("]}");
        k
    }
}

/// XAD: street^other^city^county^postcode^country^type.
pub fn address(w: &mut JsonWriter, k: impl Key, v: V2<'_>) {
    let parts = comps(v);
    let c = |n| parts.get(n);
    let use_ = match &*c(7) {
        "H" | "HP" => "home",
        "B" | "O" => "work",
        "C" => "temp",
        "OLD" => "old",
        _ => "",
    };
    w.object(k, |w| {
        w.str("use", use_);
        w.array("line", |w| {
            w.str(Item, &comp(parts.value(1), 1)); // SAD.1
            w.str(Item, &c(2));
        });
        w.str("city", &c(3));
        w.str("district", &c(4));
        w.str("postalCode", &c(5));
        w.str("country", &c(6));
    });
}

/// XTN, in both its v2.3 form (the number in component 1) and v2.5 (use, equipment, email,
/// area code, local number, unformatted).
pub fn contact_point(w: &mut JsonWriter, k: impl Key, v: V2<'_>, default_use: &str) {
    let parts = comps(v);
    let c = |n| parts.get(n);
    let equipment = c(3);
    let email = c(4);
    let (system, value) = if equipment.eq_ignore_ascii_case("Internet")
        || equipment.eq_ignore_ascii_case("X.400")
        || (!email.is_empty() && c(1).is_empty() && c(7).is_empty())
    {
        ("email", email)
    } else {
        let number = [c(12), c(1)]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| Cow::Owned(format!("{}{}", c(6), c(7))));
        (if equipment == "FX" { "fax" } else { "phone" }, number)
    };
    if value.trim().is_empty() {
        return;
    }
    let use_ = match (&*c(2), &*equipment) {
        (_, "CP") | ("PRS", _) => "mobile",
        ("WPN", _) => "work",
        ("PRN" | "ORN" | "VHN", _) => "home",
        _ => default_use,
    };
    w.object(k, |w| {
        w.str("system", system);
        w.str("value", value.trim());
        w.str("use", use_);
    });
}

/// `telecom`: the XTN repetitions of a home-phone and a business-phone field (PID-13/14,
/// NK1-5/6), each with that use unless the XTN says otherwise.
pub fn telecom(w: &mut JsonWriter, seg: &IndexedSegment<'_>, home: usize, work: usize) {
    w.array("telecom", |w| {
        for (field, default_use) in [(home, "home"), (work, "work")] {
            for v in reps(seg, field) {
                contact_point(w, Item, v, default_use);
            }
        }
    });
}

/// One `[{ "system": …, "value": … }]` identifier list.
pub fn identifier(w: &mut JsonWriter, system: &str, value: &str) {
    w.array("identifier", |w| {
        w.object(Item, |w| {
            w.str("system", system);
            w.str("value", value);
        })
    });
}

/// XCN → a Practitioner in the Bundle (GMC or GMP code where the id has that shape, else a
/// local identifier); returns its reference, or `None` for an empty field.
pub fn practitioner(cx: &mut Context<'_, '_>, v: V2<'_>) -> Option<Ref> {
    let parts = comps(v);
    let c = |n| parts.get(n);
    let id = c(1);
    let (family, given, prefix) = (c(2), c(3), c(6));
    let display = joined(&[&prefix, &given, &family]);
    if id.is_empty() && display.is_empty() {
        return None;
    }
    let map = cx.map;
    let s = &map.map.systems;
    let digits7 = |t: &str| t.len() == 7 && t.bytes().all(|b| b.is_ascii_digit());
    let (system, value): (Cow<'_, str>, &str) =
        if let Some(gmc) = id.strip_prefix('C').filter(|t| digits7(t)) {
            (Cow::Borrowed(&s.gmc_number), gmc)
        } else if id.strip_prefix('G').is_some_and(digits7) {
            (Cow::Borrowed(&s.gmp_number), &id)
        } else {
            (Cow::Owned(cx.system(&s.local_practitioner, &c(9), "")), &id)
        };
    let key = if value.is_empty() {
        ["name|", &display, ""]
    } else {
        [&*system, "|", value]
    };
    let (id, held) = cx.identify("Practitioner", &key);
    if held {
        return Some(Ref {
            reference: id,
            display,
        });
    }
    let mut r = cx.writer();
    if !value.is_empty() {
        identifier(&mut r, &system, value);
    }
    r.array("name", |w| {
        w.object(Item, |w| {
            w.str("family", &family);
            w.array("given", |w| w.str(Item, &given));
            w.array("prefix", |w| w.str(Item, &prefix));
        })
    });
    let reference = cx.add_identified("Practitioner", id, r, Upsert::ById);
    Some(Ref { reference, display })
}

/// An organisation by ODS code (`name` optional); returns its reference.
pub fn organization(cx: &mut Context<'_, '_>, ods: &str, name: &str) -> Option<Ref> {
    let (ods, name) = (ods.trim(), name.trim());
    if ods.is_empty() {
        return None;
    }
    let map = cx.map;
    let system = &map.map.systems.ods_organization;
    let (mut reference, held) = cx.identify("Organization", &[system, "|", ods]);
    if !held {
        let mut r = cx.writer();
        identifier(&mut r, system, ods);
        r.str("name", name);
        reference = cx.add_identified("Organization", reference, r, Upsert::ById);
    }
    Some(Ref {
        reference,
        display: name.to_string(),
    })
}

/// The parts that are not empty, separated by spaces.
pub fn joined(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts.iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(p);
    }
    out
}

/// Whether `s` looks like an ODS code (3–6 upper-case letters and digits).
pub fn looks_like_ods(s: &str) -> bool {
    (3..=6).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}
