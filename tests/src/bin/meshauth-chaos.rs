//! `meshauth-chaos [SECONDS_PER_FAULT] [FAULT...]`: faults under load (see
//! `meshauth_tests::chaos` and scripts/chaos.sh). Prints one table row per fault and
//! exits 1 if any invariant broke.

use meshauth_tests::chaos::{Chaos, Row, Settings, FAULTS};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds = match args.next().map(|a| a.parse::<u64>()) {
        None => 20,
        Some(Ok(s)) if (1..=600).contains(&s) => s,
        Some(_) => {
            eprintln!(
                "usage: meshauth-chaos [SECONDS_PER_FAULT (1-600)] [FAULT...]\nfaults: {}",
                FAULTS.join(" ")
            );
            std::process::exit(2);
        }
    };
    let only: Vec<String> = args.collect();
    if let Some(bad) = only.iter().find(|f| !FAULTS.contains(&f.as_str())) {
        eprintln!("unknown fault {bad:?}; faults: {}", FAULTS.join(" "));
        std::process::exit(2);
    }
    let mut chaos = Chaos::start(Settings {
        seconds,
        only,
        rate_per_thread: 60,
    });
    let rows: Vec<Row> = chaos.faults().iter().map(|f| chaos.run(f)).collect();
    println!("{}", Row::header());
    for r in &rows {
        println!("{}", r.line());
    }
    let mut broken = false;
    for r in &rows {
        for n in &r.notes {
            println!("- {}: {n}", r.fault);
        }
        for why in r.broken() {
            println!("- {}: INVARIANT BROKEN: {why}", r.fault);
            broken = true;
        }
        for e in &r.counts.examples {
            println!("- {}: {e}", r.fault);
        }
    }
    if chaos.cp_log().contains("panicked") {
        println!("- the control plane panicked");
        broken = true;
    }
    drop(chaos);
    std::process::exit(i32::from(broken));
}
