fn main() {
    let n = stagecast::pii::Normalizer::new("BR").unwrap();
    let t = std::time::Instant::now();
    for i in 0..100_000u64 {
        let p = format!("+55 11 9{:08}", i);
        std::hint::black_box(n.phone(&p).ok());
    }
    println!("phone: {:?} per 100k", t.elapsed());
    let t = std::time::Instant::now();
    for i in 0..100_000u64 {
        let e = format!("cliente{i}@example.com");
        std::hint::black_box(n.email(&e).ok());
        std::hint::black_box(n.first_name("Cliente").ok());
        std::hint::black_box(n.last_name(&i.to_string()).ok());
        std::hint::black_box(n.external_id(&i.to_string()).ok());
    }
    println!("email+names+external_id: {:?} per 100k", t.elapsed());
}
