//! Giving back what only the start needed, before the supervisor settles down to watch
//! its container for as long as it runs (one supervisor per container, so every page
//! kept is paid per container).

use std::fs;
use std::io::{BufRead, BufReader};

use crate::sys;

/// Frees the heap's free pages, and drops the page-table entries of every read-only,
/// file-backed mapping that has no page of its own (the binary's code and read-only
/// data): those pages are the file's, shared with every other supervisor through the
/// page cache, and a page the loop touches again is mapped back from there on first use.
/// Writable mappings, and ones holding private pages, are left alone: dropping them would
/// lose their contents. Best effort: whatever fails leaves the process as it was.
pub fn release_start_up() {
    sys::trim_heap();
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else { return };
    for (start, len) in shared_read_only_mappings(&smaps) {
        // SAFETY: [start, start + len) is a whole read-only, private, file-backed mapping
        // of this process without a single private (anonymous) page, read from
        // /proc/self/smaps just now in this single-threaded process: every page reads
        // back from the file.
        unsafe { sys::drop_file_pages(start, len) };
    }
}

/// `(start, length)` of the mappings in `smaps` that are read-only, private, backed by
/// a file and hold no anonymous page.
fn shared_read_only_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in BufReader::new(smaps.as_bytes()).lines() {
        let Ok(line) = line else { return Vec::new() };
        if let Some(anon) = line.strip_prefix("Anonymous:") {
            if anon.trim() != "0 kB" {
                current = None;
            }
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        // A mapping's header line: the previous one is complete.
        found.extend(current.take());
        let path = fields.nth(3).unwrap_or("");
        if perms.starts_with('r')
            && perms.as_bytes().get(1) == Some(&b'-')
            && perms.ends_with('p')
            && path.starts_with('/')
        {
            current = Some((start, end - start));
        }
    }
    found.extend(current);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_picked() {
        let smaps = "\
1000-3000 r--p 00000000 fe:00 1 /usr/bin/x
Rss: 8 kB
Anonymous: 0 kB
3000-4000 r--p 00002000 fe:00 1 /usr/bin/x
Anonymous: 4 kB
4000-5000 rw-p 00003000 fe:00 1 /usr/bin/x
Anonymous: 0 kB
5000-6000 r-xp 00004000 fe:00 1 /usr/bin/x
Anonymous: 0 kB
6000-7000 r--s 00000000 00:01 2 /dev/shm/y
Anonymous: 0 kB
7000-8000 r--p 00000000 00:00 0 [vvar]
Anonymous: 0 kB
8000-a000 r--p 00000000 fe:00 3 /usr/lib/z.so
Anonymous: 0 kB
";
        assert_eq!(shared_read_only_mappings(smaps), [(0x1000, 0x2000), (0x5000, 0x1000), (0x8000, 0x2000)]);
    }
}
