//! History rows as CSV, in two dialects: one for English tools (commas, decimal points) and
//! one that a German Excel opens as it is (semicolons, decimal commas, a byte-order mark so
//! that umlauts survive).

use std::fmt::Write;

use super::HistoryRow;

/// Which tools the CSV is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvDialect {
    /// Commas between fields, decimal points, English headers.
    English,
    /// Semicolons, decimal commas, German headers and a UTF-8 byte-order mark: what a German
    /// Excel expects when a file is opened with a double click.
    German,
}

impl CsvDialect {
    /// The dialect for a language code (`de`, `de-AT`: German; anything else English).
    pub fn for_language(code: &str) -> Self {
        let german = code.get(..2).is_some_and(|c| c.eq_ignore_ascii_case("de"));
        if german {
            CsvDialect::German
        } else {
            CsvDialect::English
        }
    }

    fn separator(self) -> char {
        match self {
            CsvDialect::English => ',',
            CsvDialect::German => ';',
        }
    }

    fn header(self) -> [&'static str; 12] {
        match self {
            CsvDialect::English => [
                "machine",
                "scrap_index",
                "shift",
                "day",
                "start_local",
                "end_local",
                "start_utc",
                "end_utc",
                "zone",
                "sum",
                "count",
                "avg",
            ],
            CsvDialect::German => [
                "Maschine",
                "Ausschussindex",
                "Schicht",
                "Tag",
                "Beginn (lokal)",
                "Ende (lokal)",
                "Beginn (UTC)",
                "Ende (UTC)",
                "Zeitzone",
                "Summe",
                "Anzahl",
                "Mittelwert",
            ],
        }
    }

    fn final_column(self) -> (&'static str, &'static str, &'static str) {
        match self {
            CsvDialect::English => ("final", "yes", "no"),
            CsvDialect::German => ("Endgültig", "ja", "nein"),
        }
    }

    fn number(self, value: f64) -> String {
        // Rust writes the shortest text that reads back as the same f64, never with an
        // exponent, which every spreadsheet reads as a number.
        let text = value.to_string();
        match self {
            CsvDialect::English => text,
            CsvDialect::German => text.replace('.', ","),
        }
    }
}

/// `rows` as CSV with a header row: local times as `2026-12-07 06:00` (what spreadsheets read
/// as a date and time), UTC times in RFC 3339, the zone's name in every row, CRLF line ends.
pub fn history_csv(rows: &[HistoryRow], zone: &str, dialect: CsvDialect) -> String {
    let sep = dialect.separator();
    let mut out = String::new();
    if dialect == CsvDialect::German {
        out.push('\u{feff}');
    }
    let (final_name, yes, no) = dialect.final_column();
    let header = dialect.header();
    let header = header
        .iter()
        .chain([&final_name])
        .map(|h| text_field(h, sep));
    out.push_str(&header.collect::<Vec<_>>().join(&sep.to_string()));
    out.push_str("\r\n");
    for row in rows {
        let fields = [
            text_field(&row.machine_id, sep),
            row.scrap_index.to_string(),
            text_field(row.period.shift.as_deref().unwrap_or(""), sep),
            row.period.day.clone(),
            spreadsheet_time(&row.period.start),
            spreadsheet_time(&row.period.end),
            row.period.start_utc.clone(),
            row.period.end_utc.clone(),
            text_field(zone, sep),
            dialect.number(row.sum),
            row.count.to_string(),
            row.avg.map(|a| dialect.number(a)).unwrap_or_default(),
            (if row.is_final { yes } else { no }).to_owned(),
        ];
        let _ = write!(out, "{}\r\n", fields.join(&sep.to_string()));
    }
    out
}

/// `2026-12-07T06:00:00+01:00` as `2026-12-07 06:00`; the UTC columns tell the two 02:00 of
/// an autumn night apart.
fn spreadsheet_time(local: &str) -> String {
    local
        .get(..16)
        .map_or_else(|| local.to_owned(), |t| t.replacen('T', " ", 1))
}

/// A text field: quoted when it holds the separator, a quote or a line break (quotes
/// doubled), and with a leading `'` when a spreadsheet would take it for a formula (a machine
/// id is whatever a client put in a topic).
fn text_field(text: &str, sep: char) -> String {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let text = if formula {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([sep, '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::report::PeriodLabels;

    fn row(machine: &str, sum: f64, avg: Option<f64>) -> HistoryRow {
        HistoryRow {
            machine_id: machine.into(),
            scrap_index: 2,
            period: Arc::new(PeriodLabels {
                shift: Some("Früh".into()),
                day: "2026-12-07".into(),
                start: "2026-12-07T06:00:00+01:00".into(),
                end: "2026-12-07T14:00:00+01:00".into(),
                start_utc: "2026-12-07T05:00:00.000Z".into(),
                end_utc: "2026-12-07T13:00:00.000Z".into(),
            }),
            sum,
            count: 4,
            avg,
            is_final: true,
        }
    }

    #[test]
    fn english_csv_has_commas_and_points() {
        let csv = history_csv(
            &[row("A1", 12.5, Some(3.125))],
            "Europe/Berlin",
            CsvDialect::English,
        );
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "machine,scrap_index,shift,day,start_local,end_local,start_utc,end_utc,zone,sum,count,avg,final"
        );
        assert_eq!(
            lines[1],
            "A1,2,Früh,2026-12-07,2026-12-07 06:00,2026-12-07 14:00,2026-12-07T05:00:00.000Z,\
             2026-12-07T13:00:00.000Z,Europe/Berlin,12.5,4,3.125,yes"
        );
        assert_eq!(lines[2], "", "ends with a line break");
    }

    #[test]
    fn german_csv_has_semicolons_decimal_commas_and_a_byte_order_mark() {
        let csv = history_csv(
            &[row("A1", 12.5, None)],
            "Europe/Berlin",
            CsvDialect::German,
        );
        assert!(
            csv.starts_with("\u{feff}Maschine;Ausschussindex;Schicht;"),
            "{csv}"
        );
        assert!(csv.contains(";Endgültig\r\n"), "{csv}");
        assert!(csv.contains(";Europe/Berlin;12,5;4;;ja\r\n"), "{csv}");
        assert_eq!(CsvDialect::for_language("de-AT"), CsvDialect::German);
        assert_eq!(CsvDialect::for_language("en"), CsvDialect::English);
    }

    #[test]
    fn text_is_quoted_and_never_a_formula() {
        let csv = history_csv(
            &[row("=HYPERLINK(\"x\";1)", 1.0, None)],
            "UTC",
            CsvDialect::German,
        );
        assert!(csv.contains("\r\n\"'=HYPERLINK(\"\"x\"\";1)\";2;"), "{csv}");
        let csv = history_csv(&[row("A,1", 1.0, None)], "UTC", CsvDialect::English);
        assert!(csv.contains("\r\n\"A,1\",2,"), "{csv}");
    }
}
