fn main() {
    println!("stagecast");
}
