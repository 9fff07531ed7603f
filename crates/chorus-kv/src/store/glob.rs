//! Redis's glob-style pattern matching (KEYS, SCAN's MATCH).

/// Redis's glob-style matching (`*`, `?`, `[abc]`, `[^a-z]`, `\` escapes), without recursion:
/// the usual backtracking on the last `*`, so time is at most pattern × string.
pub fn glob_match(pat: &[u8], s: &[u8], nocase: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let fold = |c: u8| if nocase { c.to_ascii_lowercase() } else { c };
    while si < s.len() {
        if pi < pat.len() && pat[pi] == b'*' {
            while pi < pat.len() && pat[pi] == b'*' {
                pi += 1;
            }
            if pi == pat.len() {
                return true;
            }
            star = Some((pi, si));
            continue;
        }
        if pi < pat.len() {
            let (ok, next) = match_one(pat, pi, s[si], &fold);
            if ok {
                pi = next;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < pat.len() && pat[pi] == b'*' {
        pi += 1;
    }
    pi == pat.len()
}

/// Matches one pattern token at `pi` against `c`: (matched, the next token's position).
fn match_one(pat: &[u8], pi: usize, c: u8, fold: &impl Fn(u8) -> u8) -> (bool, usize) {
    match pat[pi] {
        b'?' => (true, pi + 1),
        b'\\' if pi + 1 < pat.len() => (fold(pat[pi + 1]) == fold(c), pi + 2),
        b'[' => {
            let mut p = pi + 1;
            let not = p < pat.len() && pat[p] == b'^';
            if not {
                p += 1;
            }
            let mut matched = false;
            loop {
                if p >= pat.len() {
                    break;
                }
                if pat[p] == b'\\' && p + 1 < pat.len() {
                    p += 1;
                    if pat[p] == c {
                        matched = true;
                    }
                } else if pat[p] == b']' {
                    p += 1;
                    break;
                } else if p + 2 < pat.len() && pat[p + 1] == b'-' {
                    let (mut lo, mut hi) = (fold(pat[p]), fold(pat[p + 2]));
                    if lo > hi {
                        std::mem::swap(&mut lo, &mut hi);
                    }
                    if (lo..=hi).contains(&fold(c)) {
                        matched = true;
                    }
                    p += 2;
                } else if fold(pat[p]) == fold(c) {
                    matched = true;
                }
                p += 1;
            }
            (matched != not, p)
        }
        other => (fold(other) == fold(c), pi + 1),
    }
}
