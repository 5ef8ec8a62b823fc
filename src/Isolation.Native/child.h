#ifndef ISOLATION_CHILD_H
#define ISOLATION_CHILD_H
int iso_child_main(void *arg);
long iso_clone3(void *args, unsigned long size, int (*fn)(void *), void *arg);
#endif
