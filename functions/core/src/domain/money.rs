//! Money for people: minor units shown with each currency's exponent and symbol
//! ("$652.60", "¥5,000", "BHD 1.250"). Machine fields keep minor units; only text that
//! people read goes through here.

/// Stripe's zero-decimal currencies: an amount of 5000 JPY is ¥5,000.
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Stripe's three-decimal currencies.
const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];

/// Digits after the decimal point for a currency (ISO 4217 as Stripe applies it).
pub fn exponent(currency: &str) -> u32 {
    let c = currency.to_ascii_lowercase();
    if ZERO_DECIMAL.contains(&c.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&c.as_str()) {
        3
    } else {
        2
    }
}

fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "usd" => "$",
        "eur" => "€",
        "gbp" => "£",
        "jpy" => "¥",
        "inr" => "₹",
        "krw" => "₩",
        "cad" => "CA$",
        "aud" => "A$",
        "nzd" => "NZ$",
        "cny" => "CN¥",
        "brl" => "R$",
        "mxn" => "MX$",
        _ => return None,
    })
}

/// Decimal digits with a comma between thousands: "1234567" → "1,234,567".
pub fn group_digits(digits: &str) -> String {
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    grouped
}

/// `amount` minor units of `currency`, formatted for people.
pub fn format_minor(amount: i64, currency: &str) -> String {
    let currency = currency.to_ascii_lowercase();
    let exp = exponent(&currency);
    let scale = 10u128.pow(exp);
    let abs = u128::from(amount.unsigned_abs());
    let (whole, fraction) = (abs / scale, abs % scale);
    let grouped = group_digits(&whole.to_string());
    let number = if exp == 0 {
        grouped
    } else {
        format!("{grouped}.{fraction:0width$}", width = exp as usize)
    };
    let sign = if amount < 0 { "-" } else { "" };
    match symbol(&currency) {
        Some(s) => format!("{sign}{s}{number}"),
        None => format!("{sign}{} {number}", currency.to_ascii_uppercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::format_minor;

    #[test]
    fn each_currency_keeps_its_exponent() {
        assert_eq!(format_minor(65_260, "usd"), "$652.60");
        assert_eq!(format_minor(5_000, "jpy"), "¥5,000");
        assert_eq!(format_minor(5_000, "JPY"), "¥5,000");
        assert_eq!(format_minor(123_456_789, "eur"), "€1,234,567.89");
        assert_eq!(format_minor(1_250, "bhd"), "BHD 1.250");
        assert_eq!(format_minor(-705, "gbp"), "-£7.05");
        assert_eq!(format_minor(0, "chf"), "CHF 0.00");
        assert_eq!(format_minor(100_000, "krw"), "₩100,000");
        assert_eq!(format_minor(i64::MIN, "usd"), "-$92,233,720,368,547,758.08");
    }
}
