use super::*;

#[test]
fn cidr_host_bits_name_the_network() {
    let err = "137.117.106.90/29".parse::<Cidr>().unwrap_err();
    assert_eq!(err.0, "host bits are set; use 137.117.106.88/29");
    assert_eq!(
        "10.0.0.1".parse::<Cidr>().unwrap().to_string(),
        "10.0.0.1/32"
    );
    assert_eq!(
        "2001:db8::1".parse::<Cidr>().unwrap().to_string(),
        "2001:db8::1/128"
    );
    assert!(Cidr::parse_strict("10.0.0.0").is_err());
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
}

#[test]
fn cidr_nth_address() {
    let c: Cidr = "10.200.0.0/16".parse().unwrap();
    assert_eq!(c.nth(4).unwrap().to_string(), "10.200.0.4");
    let small: Cidr = "10.0.0.0/30".parse().unwrap();
    assert_eq!(small.nth(4), None);
}

#[test]
fn address_entries() {
    for ok in [
        "*",
        "10.0.0.0/8",
        "10.0.0.1",
        "10.0.0.1-10.0.0.9",
        "2001:db8::/32",
    ] {
        let e: AddressEntry = ok.parse().unwrap();
        assert_eq!(e.to_string(), ok);
    }
    let e: AddressEntry = "10.0.0.1-10.0.0.9".parse().unwrap();
    assert!(e.contains("10.0.0.5".parse().unwrap()));
    assert!(!e.contains("10.0.0.10".parse().unwrap()));
    assert!(
        "10.0.0.9-10.0.0.1"
            .parse::<AddressEntry>()
            .unwrap_err()
            .0
            .contains("10.0.0.1-10.0.0.9")
    );
    let typo = "destination-ports".parse::<AddressEntry>().unwrap_err();
    assert!(typo.0.contains("--destination-ports"), "{typo}");
}

#[test]
fn ports() {
    assert_eq!("*".parse::<PortEntry>().unwrap(), PortEntry::Any);
    assert_eq!(
        "443".parse::<PortEntry>().unwrap(),
        PortEntry::Range(443, 443)
    );
    assert_eq!("80-90".parse::<PortEntry>().unwrap().to_string(), "80-90");
    for bad in ["0", "65536", "90-80", "http", ""] {
        assert!(bad.parse::<PortEntry>().is_err(), "{bad}");
    }
}

#[test]
fn protocols_print_as_az() {
    assert_eq!("tcp".parse::<Protocol>().unwrap().to_string(), "TCP");
    assert_eq!("ANY".parse::<Protocol>().unwrap().to_string(), "Any");
    assert!("sctp".parse::<Protocol>().is_err());
}

#[test]
fn lists_split_on_spaces_commas_and_lines() {
    assert_eq!(split_list(["a,b", "c\nd", ""]), vec!["a", "b", "c", "d"]);
}

#[test]
fn authorized_ranges() {
    assert_eq!(
        "".parse::<AuthorizedRanges>().unwrap(),
        AuthorizedRanges(None)
    );
    let r: AuthorizedRanges = "203.0.113.4, 10.0.0.0/8,203.0.113.4/32".parse().unwrap();
    let r: Vec<String> = r.0.unwrap().iter().map(|c| c.to_string()).collect();
    assert_eq!(r, ["203.0.113.4/32", "10.0.0.0/8"]);
    let e = "0.0.0.0/32,10.0.0.0/8"
        .parse::<AuthorizedRanges>()
        .unwrap_err();
    assert!(e.0.contains("cannot be combined"));
    let e = "137.117.106.90/29".parse::<AuthorizedRanges>().unwrap_err();
    assert!(e.0.contains("use 137.117.106.88/29"), "{e}");
}
