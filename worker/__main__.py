from worker.entry_point import main

main()
