;; Says on stderr that it has started, then works until its fuel or its time is gone (or
;; its job is cancelled): what a long job that reports as it goes looks like.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "started: working on it\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 23))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 24)))
    (loop $forever (br $forever))))
