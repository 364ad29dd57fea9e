;; Counts to ten million for each byte of stdin, then prints "done": a task whose
;; running time the caller chooses through the length of its input.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "done\n")
  (func (export "_start")
    (local $total i64) (local $i i64)
    (block $done
      (loop $chunk
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 65536))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (i32.eqz (i32.load (i32.const 8))))
        (local.set $total (i64.add (local.get $total) (i64.extend_i32_u (i32.load (i32.const 8)))))
        (br $chunk)))
    (local.set $total (i64.mul (local.get $total) (i64.const 10000000)))
    (block $end
      (loop $count
        (br_if $end (i64.ge_u (local.get $i) (local.get $total)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $count)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
