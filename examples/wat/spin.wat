;; Never stops: it runs until its fuel or its time is gone.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever (br $forever))))
