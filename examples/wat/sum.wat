;; Reads decimal numbers from stdin (anything that is not a digit separates them) and
;; prints their sum.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0: iovec; 8: count; 200..241: digits of the answer; 1024..: the input buffer
  (func $print_u64 (param $v i64)
    (local $p i32)
    (local.set $p (i32.const 240))
    (i32.store8 (local.get $p) (i32.const 10))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (i32.sub (i32.const 241) (local.get $p)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (local $n i32) (local $i i32) (local $c i32) (local $sum i64) (local $cur i64)
    (block $done
      (loop $chunk
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 65536))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $i (i32.const 0))
        (block $end
          (loop $each
            (br_if $end (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $c (i32.sub (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                                   (i32.const 48)))
            (if (i32.lt_u (local.get $c) (i32.const 10))
              (then (local.set $cur (i64.add (i64.mul (local.get $cur) (i64.const 10))
                                             (i64.extend_i32_u (local.get $c)))))
              (else (local.set $sum (i64.add (local.get $sum) (local.get $cur)))
                    (local.set $cur (i64.const 0))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $each)))
        (br $chunk)))
    (call $print_u64 (i64.add (local.get $sum) (local.get $cur)))))
