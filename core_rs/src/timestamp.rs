//! OKX's `OK-ACCESS-TIMESTAMP` in the form clients send, `YYYY-MM-DDTHH:MM:SS.sssZ`, read as
//! Unix milliseconds: the gateway's fast path. Any other form (another offset, another number
//! of fraction digits, a date that does not exist) is `None`, and the gateway's Python reading
//! (`datetime.fromisoformat`) decides; `tests/test_signature.py` holds the two to the same
//! milliseconds.

const MS_PER_S: i64 = 1000;
const S_PER_DAY: i64 = 86_400;

/// Unix milliseconds of `text` when it is exactly `YYYY-MM-DDTHH:MM:SS.sssZ` and names a real
/// UTC time of years 1 to 9999 (no leap second); None otherwise.
pub fn utc_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')];
    if bytes.len() != 24 || separators.iter().any(|&(at, separator)| bytes[at] != separator) {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        bytes[from..to]
            .iter()
            .try_fold(0, |value, &byte| byte.is_ascii_digit().then(|| value * 10 + i64::from(byte - b'0')))
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second, ms) = (number(11, 13)?, number(14, 16)?, number(17, 19)?, number(20, 23)?);
    let time_ok = hour < 24 && minute < 60 && second < 60;
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || !time_ok {
        return None;
    }
    let seconds = days_from_epoch(year, month, day) * S_PER_DAY + (hour * 60 + minute) * 60 + second;
    Some(seconds * MS_PER_S + ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`: years counted from March, in eras of 400 years).
fn days_from_epoch(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okx_example_and_calendar_edges() {
        assert_eq!(utc_ms("2020-12-08T09:08:57.715Z"), Some(1_607_418_537_715));
        assert_eq!(utc_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(utc_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(utc_ms("2000-02-29T00:00:00.000Z"), Some(951_782_400_000));
        assert_eq!(utc_ms("0001-01-01T00:00:00.000Z"), Some(-62_135_596_800_000));
        assert_eq!(utc_ms("9999-12-31T23:59:59.999Z"), Some(253_402_300_799_999));
    }

    #[test]
    fn anything_else_is_left_to_the_python_reading() {
        for text in [
            "1900-02-29T00:00:00.000Z", // not a leap year
            "2021-04-31T00:00:00.000Z",
            "2021-00-10T00:00:00.000Z",
            "2021-13-10T00:00:00.000Z",
            "0000-01-01T00:00:00.000Z",
            "2021-01-10T24:00:00.000Z",
            "2021-01-10T23:60:00.000Z",
            "2021-01-10T23:59:60.000Z", // a leap second
            "2021-01-10T23:59:59.99Z",
            "2021-01-10T23:59:59.9999Z",
            "2021-01-10T23:59:59Z",
            "2021-01-10T23:59:59.999+00:00",
            "2021-01-10 23:59:59.999Z",
            "2021-01-10T23:59:5x.999Z",
            "+021-01-10T23:59:59.999Z",
            "",
        ] {
            assert_eq!(utc_ms(text), None, "{text}");
        }
    }
}
